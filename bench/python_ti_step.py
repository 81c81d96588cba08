#!/usr/bin/python3
"""The textual-inversion step as the Python scripts people use today run it: a baseline for tinv.

diffusers' examples/textual_inversion/textual_inversion.py does, per step: VAE-encode the batch
(latent_dist.sample() * scaling_factor), draw noise and timesteps, add noise, run the CLIP text
encoder with the whole token-embedding table trainable, run the frozen UNet, take the MSE against
the noise (or the velocity), backward, AdamW over the embedding table, and put every row but the
placeholders' back. diffusers itself is not installable here (no network, no Debian package),
so this file rebuilds the modules that step touches in plain PyTorch, module by module as
diffusers 0.25 and transformers' CLIPTextModel define them, under the same state-dict keys, and
runs the loop the script runs. It uses only Debian's python3-torch.

`check FIXTURE_DIR` proves that it computes diffusers' function: it loads a parity fixture's
diffusers folder strictly (every key, every shape) and compares text encoder, UNet, VAE encoder
and the 12-step ti_train run against the fixture's reference outputs, at the fixtures'
tolerances; it exits 1 on any mismatch (ctest python.ti_step.<fixture>).

`bench` times the step at SD1.5 size with random weights, like bench_invert:
  OMP_NUM_THREADS=2 bench/python_ti_step.py bench --res 256 --iters 2 [--cached-latents]
--cached-latents skips the per-step VAE encode (what tinv's trainer and bench_invert's `step`
mode do); without it the step is the script's. Prints `step <s/step> s/step, peak <GB> GB`.
bench/python_vs.sh runs it and bench_invert in turns.
This is a benchmark and a test tool, not part of tinv: nothing in the product runs Python.
"""
import argparse
import json
import math
import resource
import struct
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn


# ---------------------------------------------------------------------------------------------
# safetensors, read with the standard library (the `safetensors` package is not in Debian 12)
_DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "I64": torch.int64,
           "I32": torch.int32, "F64": torch.float64}


def load_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    meta = header.pop("__metadata__", {}) or {}
    base = 8 + n
    out = {}
    for name, info in header.items():
        begin, end = info["data_offsets"]
        dtype = _DTYPES[info["dtype"]]
        t = torch.frombuffer(bytearray(data[base + begin:base + end]), dtype=dtype) if end > begin \
            else torch.empty(0, dtype=dtype)
        out[name] = t.reshape(info["shape"])
    return out, meta


def load_strict(module, path, what):
    """Loads every parameter of `module` from `path`; missing or mis-shaped keys are an error."""
    tensors, _ = load_safetensors(path)
    own = module.state_dict()
    missing = [k for k in own if k not in tensors]
    wrong = [k for k in own if k in tensors and tuple(tensors[k].shape) != tuple(own[k].shape)]
    extra = [k for k in tensors if k not in own and not k.endswith("position_ids")]
    if missing or wrong or extra:
        raise SystemExit(f"{path}: {what} does not match: missing {missing[:3]}, "
                         f"mis-shaped {wrong[:3]}, unexpected {extra[:3]}")
    module.load_state_dict({k: tensors[k].float() for k in own})


# ---------------------------------------------------------------------------------------------
# transformers' CLIPTextModel (text_model.*)
class ClipAttention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.q_proj, self.k_proj = nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.v_proj, self.out_proj = nn.Linear(dim, dim), nn.Linear(dim, dim)

    def forward(self, x, mask):  # x [B, T, C], mask [T, T] additive causal
        b, t, c = x.shape
        d = c // self.heads
        q = (self.q_proj(x) * d ** -0.5).view(b, t, self.heads, d).transpose(1, 2)
        k = self.k_proj(x).view(b, t, self.heads, d).transpose(1, 2)
        v = self.v_proj(x).view(b, t, self.heads, d).transpose(1, 2)
        p = torch.softmax(q @ k.transpose(-1, -2) + mask, dim=-1)  # [B, H, T, T]
        return self.out_proj((p @ v).transpose(1, 2).reshape(b, t, c))


class ClipMlp(nn.Module):
    def __init__(self, dim, inner, act):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, inner), nn.Linear(inner, dim)
        self.act = act

    def forward(self, x):
        h = self.fc1(x)
        h = h * torch.sigmoid(1.702 * h) if self.act == "quick_gelu" else F.gelu(h)
        return self.fc2(h)


class ClipLayer(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        dim, eps = cfg["hidden_size"], cfg.get("layer_norm_eps", 1e-5)
        self.layer_norm1, self.layer_norm2 = nn.LayerNorm(dim, eps=eps), nn.LayerNorm(dim, eps=eps)
        self.self_attn = ClipAttention(dim, cfg["num_attention_heads"])
        self.mlp = ClipMlp(dim, cfg["intermediate_size"], cfg.get("hidden_act", "quick_gelu"))

    def forward(self, x, mask):
        x = x + self.self_attn(self.layer_norm1(x), mask)
        return x + self.mlp(self.layer_norm2(x))


class ClipTextTransformer(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        dim = cfg["hidden_size"]
        self.embeddings = nn.Module()
        self.embeddings.token_embedding = nn.Embedding(cfg["vocab_size"], dim)
        self.embeddings.position_embedding = nn.Embedding(cfg["max_position_embeddings"], dim)
        self.encoder = nn.Module()
        self.encoder.layers = nn.ModuleList(ClipLayer(cfg) for _ in range(cfg["num_hidden_layers"]))
        self.final_layer_norm = nn.LayerNorm(dim, eps=cfg.get("layer_norm_eps", 1e-5))

    def forward(self, ids, table):  # ids [B, T]; table [V', C]: the (trainable) token rows
        t = ids.shape[1]
        x = F.embedding(ids, table) + self.embeddings.position_embedding.weight[:t]
        mask = torch.full((t, t), float("-inf")).triu(1)
        for layer in self.encoder.layers:
            x = layer(x, mask)
        return self.final_layer_norm(x)  # last_hidden_state [B, T, C]


class ClipTextModel(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.text_model = ClipTextTransformer(cfg)


# ---------------------------------------------------------------------------------------------
# diffusers 0.25 UNet2DConditionModel (epsilon / v-prediction SD1.x and SD2.x)
class Attention(nn.Module):  # diffusers Attention with AttnProcessor (torch 1.13: no SDPA)
    def __init__(self, dim, ctx_dim, heads, head_dim, upcast=False, bias=False):
        super().__init__()
        inner = heads * head_dim
        self.heads, self.scale, self.upcast = heads, head_dim ** -0.5, upcast
        self.to_q = nn.Linear(dim, inner, bias=bias)
        self.to_k = nn.Linear(ctx_dim, inner, bias=bias)
        self.to_v = nn.Linear(ctx_dim, inner, bias=bias)
        self.to_out = nn.ModuleList([nn.Linear(inner, dim), nn.Dropout(0.0)])

    def forward(self, x, ctx=None):  # x [B, N, C], ctx [B, M, Cc]
        ctx = x if ctx is None else ctx
        b, n, _ = x.shape

        def heads(t):  # [B, L, H*D] -> [B*H, L, D]
            return t.view(b, -1, self.heads, t.shape[-1] // self.heads).transpose(1, 2) \
                .reshape(b * self.heads, -1, t.shape[-1] // self.heads)

        q, k, v = heads(self.to_q(x)), heads(self.to_k(ctx)), heads(self.to_v(ctx))
        if self.upcast:
            q, k = q.float(), k.float()
        s = torch.baddbmm(torch.empty(q.shape[0], q.shape[1], k.shape[1], dtype=q.dtype), q,
                          k.transpose(-1, -2), beta=0, alpha=self.scale)
        p = s.softmax(dim=-1).to(v.dtype)  # [B*H, N, M]
        o = torch.bmm(p, v).view(b, self.heads, n, -1).transpose(1, 2).reshape(b, n, -1)
        return self.to_out[0](o)


class GEGLU(nn.Module):
    def __init__(self, dim, inner):
        super().__init__()
        self.proj = nn.Linear(dim, inner * 2)

    def forward(self, x):
        h, gate = self.proj(x).chunk(2, dim=-1)
        return h * F.gelu(gate)


class FeedForward(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.net = nn.ModuleList([GEGLU(dim, dim * 4), nn.Dropout(0.0), nn.Linear(dim * 4, dim)])

    def forward(self, x):
        return self.net[2](self.net[0](x))


class BasicTransformerBlock(nn.Module):
    def __init__(self, dim, ctx_dim, heads, head_dim, upcast):
        super().__init__()
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn1 = Attention(dim, dim, heads, head_dim, upcast)
        self.attn2 = Attention(dim, ctx_dim, heads, head_dim, upcast)
        self.ff = FeedForward(dim)

    def forward(self, x, ctx):
        x = self.attn1(self.norm1(x)) + x
        x = self.attn2(self.norm2(x), ctx) + x
        return self.ff(self.norm3(x)) + x


class Transformer2DModel(nn.Module):
    def __init__(self, ch, ctx_dim, heads, layers, linear, upcast, groups):
        super().__init__()
        self.linear = linear
        self.norm = nn.GroupNorm(groups, ch, eps=1e-6)
        self.proj_in = nn.Linear(ch, ch) if linear else nn.Conv2d(ch, ch, 1)
        self.transformer_blocks = nn.ModuleList(
            BasicTransformerBlock(ch, ctx_dim, heads, ch // heads, upcast) for _ in range(layers))
        self.proj_out = nn.Linear(ch, ch) if linear else nn.Conv2d(ch, ch, 1)

    def forward(self, x, ctx):  # x [B, C, H, W]
        b, c, h, w = x.shape
        r = x
        x = self.norm(x)
        if self.linear:
            x = self.proj_in(x.permute(0, 2, 3, 1).reshape(b, h * w, c))
        else:
            x = self.proj_in(x).permute(0, 2, 3, 1).reshape(b, h * w, c)  # [B, HW, C]
        for block in self.transformer_blocks:
            x = block(x, ctx)
        if self.linear:
            x = self.proj_out(x).reshape(b, h, w, c).permute(0, 3, 1, 2)
        else:
            x = self.proj_out(x.reshape(b, h, w, c).permute(0, 3, 1, 2).contiguous())
        return x + r


class ResnetBlock2D(nn.Module):
    def __init__(self, cin, cout, temb, groups, eps):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, cin, eps=eps)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        if temb:
            self.time_emb_proj = nn.Linear(temb, cout)
        self.norm2 = nn.GroupNorm(groups, cout, eps=eps)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        if cin != cout:
            self.conv_shortcut = nn.Conv2d(cin, cout, 1)

    def forward(self, x, temb=None):
        h = self.conv1(F.silu(self.norm1(x)))
        if temb is not None:
            h = h + self.time_emb_proj(F.silu(temb))[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return (self.conv_shortcut(x) if hasattr(self, "conv_shortcut") else x) + h


class Resample(nn.Module):
    def __init__(self, ch, down, pad=1):
        super().__init__()
        self.down, self.pad = down, pad
        self.conv = nn.Conv2d(ch, ch, 3, stride=2 if down else 1, padding=pad if down else 1)

    def forward(self, x):
        if self.down:
            return self.conv(F.pad(x, (0, 1, 0, 1)) if self.pad == 0 else x)
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


def per_block(v, n):
    return list(v) if isinstance(v, (list, tuple)) else [v] * n


class UNet2DConditionModel(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        boc = cfg["block_out_channels"]
        n = len(boc)
        groups, eps = cfg.get("norm_num_groups", 32), cfg.get("norm_eps", 1e-5)
        heads = per_block(cfg.get("num_attention_heads") or cfg["attention_head_dim"], n)
        layers = per_block(cfg.get("transformer_layers_per_block", 1), n)
        ctx, lin, up = cfg["cross_attention_dim"], cfg.get("use_linear_projection", False), \
            cfg.get("upcast_attention", False)
        lpb, temb = cfg["layers_per_block"], boc[0] * 4
        self.flip, self.shift = cfg.get("flip_sin_to_cos", True), cfg.get("freq_shift", 0)
        self.conv_in = nn.Conv2d(cfg["in_channels"], boc[0], 3, padding=1)
        self.time_embedding = nn.Module()
        self.time_embedding.linear_1, self.time_embedding.linear_2 = nn.Linear(boc[0], temb), nn.Linear(temb, temb)

        self.down_blocks, self.up_blocks = nn.ModuleList(), nn.ModuleList()
        cout = boc[0]
        for i, kind in enumerate(cfg["down_block_types"]):
            cin, cout = cout, boc[i]
            blk = nn.Module()
            blk.resnets = nn.ModuleList(ResnetBlock2D(cin if j == 0 else cout, cout, temb, groups, eps) for j in range(lpb))
            if kind.startswith("CrossAttn"):
                blk.attentions = nn.ModuleList(
                    Transformer2DModel(cout, ctx, heads[i], layers[i], lin, up, groups) for _ in range(lpb))
            if i < n - 1:
                blk.downsamplers = nn.ModuleList([Resample(cout, True)])
            self.down_blocks.append(blk)

        self.mid_block = nn.Module()
        self.mid_block.resnets = nn.ModuleList(ResnetBlock2D(boc[-1], boc[-1], temb, groups, eps) for _ in range(2))
        self.mid_block.attentions = nn.ModuleList([Transformer2DModel(boc[-1], ctx, heads[-1], layers[-1], lin, up, groups)])

        rboc, rheads, rlayers = boc[::-1], heads[::-1], layers[::-1]
        cout = rboc[0]
        for i, kind in enumerate(cfg["up_block_types"]):
            prev, cout, cskip = cout, rboc[i], rboc[min(i + 1, n - 1)]
            blk = nn.Module()
            blk.resnets = nn.ModuleList(
                ResnetBlock2D((prev if j == 0 else cout) + (cskip if j == lpb else cout), cout, temb, groups, eps)
                for j in range(lpb + 1))
            if kind.startswith("CrossAttn"):
                blk.attentions = nn.ModuleList(
                    Transformer2DModel(cout, ctx, rheads[i], rlayers[i], lin, up, groups) for _ in range(lpb + 1))
            if i < n - 1:
                blk.upsamplers = nn.ModuleList([Resample(cout, False)])
            self.up_blocks.append(blk)
        self.conv_norm_out = nn.GroupNorm(groups, boc[0], eps=eps)
        self.conv_out = nn.Conv2d(boc[0], cfg.get("out_channels", 4), 3, padding=1)

    def time_proj(self, t):  # diffusers get_timestep_embedding
        half = self.conv_in.out_channels // 2
        freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32) / (half - self.shift))
        e = t.float()[:, None] * freqs[None]
        e = torch.cat([e.sin(), e.cos()], dim=-1)
        return torch.cat([e[:, half:], e[:, :half]], dim=-1) if self.flip else e

    def forward(self, x, t, ctx):  # x [B, 4, h, w], t [B] int64, ctx [B, 77, Cc]
        temb = self.time_embedding.linear_2(F.silu(self.time_embedding.linear_1(self.time_proj(t))))
        x = self.conv_in(x)
        skips = [x]
        for blk in self.down_blocks:
            for j, res in enumerate(blk.resnets):
                x = res(x, temb)
                if hasattr(blk, "attentions"):
                    x = blk.attentions[j](x, ctx)
                skips.append(x)
            if hasattr(blk, "downsamplers"):
                x = blk.downsamplers[0](x)
                skips.append(x)
        x = self.mid_block.resnets[0](x, temb)
        x = self.mid_block.attentions[0](x, ctx)
        x = self.mid_block.resnets[1](x, temb)
        for blk in self.up_blocks:
            for j, res in enumerate(blk.resnets):
                x = res(torch.cat([x, skips.pop()], dim=1), temb)
                if hasattr(blk, "attentions"):
                    x = blk.attentions[j](x, ctx)
            if hasattr(blk, "upsamplers"):
                x = blk.upsamplers[0](x)
        return self.conv_out(F.silu(self.conv_norm_out(x)))


# ---------------------------------------------------------------------------------------------
# diffusers AutoencoderKL, the encoder half (encoder.*, quant_conv)
class VaeAttention(Attention):
    def __init__(self, ch, groups):
        super().__init__(ch, ch, 1, ch, bias=True)
        self.group_norm = nn.GroupNorm(groups, ch, eps=1e-6)

    def forward(self, x):  # x [B, C, H, W]
        b, c, h, w = x.shape
        y = self.group_norm(x).view(b, c, h * w).transpose(1, 2)
        return super().forward(y).transpose(1, 2).reshape(b, c, h, w) + x


class VaeEncoder(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        boc, groups, lpb = cfg["block_out_channels"], cfg.get("norm_num_groups", 32), cfg["layers_per_block"]
        self.conv_in = nn.Conv2d(cfg.get("in_channels", 3), boc[0], 3, padding=1)
        self.down_blocks = nn.ModuleList()
        cout = boc[0]
        for i in range(len(boc)):
            cin, cout = cout, boc[i]
            blk = nn.Module()
            blk.resnets = nn.ModuleList(ResnetBlock2D(cin if j == 0 else cout, cout, 0, groups, 1e-6) for j in range(lpb))
            if i < len(boc) - 1:
                blk.downsamplers = nn.ModuleList([Resample(cout, True, pad=0)])
            self.down_blocks.append(blk)
        self.mid_block = nn.Module()
        self.mid_block.resnets = nn.ModuleList(ResnetBlock2D(cout, cout, 0, groups, 1e-6) for _ in range(2))
        self.mid_block.attentions = nn.ModuleList([VaeAttention(cout, groups)])
        self.conv_norm_out = nn.GroupNorm(groups, cout, eps=1e-6)
        self.conv_out = nn.Conv2d(cout, 2 * cfg["latent_channels"], 3, padding=1)

    def forward(self, x):
        x = self.conv_in(x)
        for blk in self.down_blocks:
            for res in blk.resnets:
                x = res(x)
            if hasattr(blk, "downsamplers"):
                x = blk.downsamplers[0](x)
        x = self.mid_block.resnets[1](self.mid_block.attentions[0](self.mid_block.resnets[0](x)))
        return self.conv_out(F.silu(self.conv_norm_out(x)))


class VaeEncoderModel(nn.Module):  # loads from the full AutoencoderKL file; the decoder keys are skipped
    def __init__(self, cfg):
        super().__init__()
        self.encoder = VaeEncoder(cfg)
        lc = cfg["latent_channels"]
        self.quant_conv = nn.Conv2d(2 * lc, 2 * lc, 1)

    def forward(self, image):  # -> posterior mean, logvar [B, latent, h, w]
        mean, logvar = self.quant_conv(self.encoder(image)).chunk(2, dim=1)
        return mean, logvar.clamp(-30.0, 20.0)


# ---------------------------------------------------------------------------------------------
class Pipeline:
    def __init__(self, te_cfg, unet_cfg, vae_cfg, sched_cfg):
        self.text_encoder = ClipTextModel(te_cfg)
        self.unet = UNet2DConditionModel(unet_cfg)
        self.vae = VaeEncoderModel(vae_cfg)
        self.scaling = vae_cfg.get("scaling_factor", 0.18215)
        self.prediction = sched_cfg.get("prediction_type", "epsilon")
        n = sched_cfg.get("num_train_timesteps", 1000)
        b0, b1 = sched_cfg.get("beta_start", 0.00085), sched_cfg.get("beta_end", 0.012)
        betas = torch.linspace(b0 ** 0.5, b1 ** 0.5, n, dtype=torch.float32) ** 2 \
            if sched_cfg.get("beta_schedule", "scaled_linear") == "scaled_linear" else torch.linspace(b0, b1, n)
        self.alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
        for m in (self.text_encoder, self.unet, self.vae):
            m.requires_grad_(False)

    @staticmethod
    def from_folder(folder):
        cfg = lambda sub, name: json.load(open(f"{folder}/{sub}/{name}"))
        p = Pipeline(cfg("text_encoder", "config.json"), cfg("unet", "config.json"), cfg("vae", "config.json"),
                     cfg("scheduler", "scheduler_config.json"))
        load_strict(p.text_encoder, f"{folder}/text_encoder/model.safetensors", "text_encoder")
        load_strict(p.unet, f"{folder}/unet/diffusion_pytorch_model.safetensors", "unet")
        vae, _ = load_safetensors(f"{folder}/vae/diffusion_pytorch_model.safetensors")
        own = p.vae.state_dict()
        missing = [k for k in own if k not in vae or tuple(vae[k].shape) != tuple(own[k].shape)]
        if missing:
            raise SystemExit(f"{folder}/vae: missing or mis-shaped {missing[:3]}")
        p.vae.load_state_dict({k: vae[k].float() for k in own})
        return p

    def step(self, table, opt, keep, ids, **draws):
        """One textual_inversion.py step; returns the loss before the update."""
        loss = self.loss_backward(table, ids, **draws)
        self.update(table, opt, keep)
        return loss

    def loss_backward(self, table, ids, latents=None, image=None, noise=None, t=None, generator=None):
        if latents is None:  # the script encodes the batch every step
            with torch.no_grad():
                mean, logvar = self.vae(image)
                latents = (mean + torch.exp(0.5 * logvar) * torch.randn(mean.shape, generator=generator)) * self.scaling
        b = latents.shape[0]
        noise = torch.randn(latents.shape, generator=generator) if noise is None else noise
        t = torch.randint(0, len(self.alphas_cumprod), (b,), generator=generator) if t is None else t
        a = self.alphas_cumprod[t].view(b, 1, 1, 1)
        noisy = a.sqrt() * latents + (1 - a).sqrt() * noise
        target = noise if self.prediction == "epsilon" else a.sqrt() * noise - (1 - a).sqrt() * latents
        states = self.text_encoder.text_model(ids, table)
        loss = F.mse_loss(self.unet(noisy, t, states).float(), target.float(), reduction="mean")
        loss.backward()
        return loss.item()

    def update(self, table, opt, keep):
        opt.step()
        opt.zero_grad()
        with torch.no_grad():  # "Let's make sure we don't update any embedding weights besides the newly added token"
            table[:keep] = self.text_encoder.text_model.embeddings.token_embedding.weight[:keep]

    def trainable_table(self, new_rows):
        """The embedding table grown by the placeholder rows, trainable as a whole (as the script does)."""
        base = self.text_encoder.text_model.embeddings.token_embedding.weight
        return torch.cat([base, new_rows]).detach().requires_grad_(True)


# ---------------------------------------------------------------------------------------------
def rel(a, b):
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


def check(fixture):
    p = Pipeline.from_folder(f"{fixture}/model")
    failed = []

    def report(name, err, tol, kind):
        ok = err <= tol
        print(f"{'ok  ' if ok else 'FAIL'} {name}: {kind} {err:.3g} (tolerance {tol:g})")
        if not ok:
            failed.append(name)

    with torch.no_grad():
        te, _ = load_safetensors(f"{fixture}/cases/text_encoder.safetensors")
        w = p.text_encoder.text_model.embeddings.token_embedding.weight
        out = p.text_encoder.text_model(te["input_ids"], w)
        report("text_encoder.last_hidden_state", (out - te["last_hidden_state"]).abs().max().item(), 1e-4, "max abs")
        out = p.text_encoder.text_model(te["added.input_ids"], torch.cat([w, te["added.embeddings"]]))
        report("text_encoder.added", (out - te["added.last_hidden_state"]).abs().max().item(), 1e-4, "max abs")
        un, _ = load_safetensors(f"{fixture}/cases/unet.safetensors")
        out = p.unet(un["sample"], un["timestep"], un["encoder_hidden_states"])
        report("unet.out", (out - un["out"]).abs().max().item(), 1e-4, "max abs")
        va, _ = load_safetensors(f"{fixture}/cases/vae.safetensors")
        mean, logvar = p.vae(va["image"])
        report("vae.posterior_mean", (mean - va["posterior_mean"]).abs().max().item(), 1e-4, "max abs")
        report("vae.posterior_logvar", (logvar - va["posterior_logvar"]).abs().max().item(), 1e-4, "max abs")

    ti, meta = load_safetensors(f"{fixture}/cases/ti_train.safetensors")
    keep = p.text_encoder.text_model.embeddings.token_embedding.weight.shape[0]
    table = p.trainable_table(ti["init_embeddings"])
    opt = torch.optim.AdamW([table], lr=float(meta.get("lr", 5e-3)), betas=(0.9, 0.999), weight_decay=1e-2, eps=1e-8)
    # The fixture's optimiser holds only the learned rows; the script's holds the whole table
    # and restores the rest, which gives the learned rows the same element-wise AdamW update.
    losses = []
    for k in range(ti["losses"].shape[0]):
        losses.append(p.loss_backward(table, ti["input_ids"][k], latents=ti["latents"], noise=ti["noises"][k],
                                      t=ti["timesteps"][k]))
        if k == 0:
            report("ti_train.first_step_grad", rel(table.grad[keep:], ti["first_step_grad"]), 1e-3, "rel")
        p.update(table, opt, keep)
    losses = torch.tensor(losses)
    worst = ((losses - ti["losses"]).abs() / ti["losses"].abs()).max().item()
    report("ti_train.losses", worst, 1e-4, "rel (worst step)")
    report("ti_train.final_embeddings", rel(table.detach()[keep:], ti["final_embeddings"]), 1e-3, "rel")
    return failed


def sd15_configs():
    te = {"vocab_size": 49408, "hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12,
          "num_attention_heads": 12, "max_position_embeddings": 77, "hidden_act": "quick_gelu"}
    unet = {"block_out_channels": [320, 640, 1280, 1280], "layers_per_block": 2, "attention_head_dim": 8,
            "cross_attention_dim": 768, "in_channels": 4, "out_channels": 4,
            "down_block_types": ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
            "up_block_types": ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3}
    vae = {"block_out_channels": [128, 256, 512, 512], "layers_per_block": 2, "latent_channels": 4,
           "scaling_factor": 0.18215}
    return te, unet, vae, {"prediction_type": "epsilon"}


def bench(args):
    torch.manual_seed(0)
    if args.threads:
        torch.set_num_threads(args.threads)
    p = Pipeline(*sd15_configs())
    for m in (p.text_encoder, p.unet, p.vae):  # random weights; small enough to keep activations finite
        for prm in m.parameters():
            if prm.dim() > 1:
                prm.data.normal_(0.0, 0.02)
    g = torch.Generator().manual_seed(1)
    keep = p.text_encoder.text_model.embeddings.token_embedding.weight.shape[0]
    table = p.trainable_table(torch.randn(6, 768, generator=g) * 0.01)
    opt = torch.optim.AdamW([table], lr=5e-3, weight_decay=1e-2)
    b, res = args.batch, args.res
    image = torch.rand(b, 3, res, res, generator=g) * 2 - 1
    ids = torch.full((b, 77), 49407, dtype=torch.long)
    ids[:, :10] = torch.tensor([49406, 320, 1125, 539, 49408, 49409, 49410, 49411, 49412, 49413])
    latents = None
    if args.cached_latents:
        with torch.no_grad():
            mean, _ = p.vae(image)
        latents = mean * p.scaling
    times = []
    for i in range(args.iters + 1):  # the first step warms up (oneDNN primitives, allocator)
        t0 = time.perf_counter()
        loss = p.step(table, opt, keep, ids, latents=latents, image=image, generator=g)
        times.append(time.perf_counter() - t0)
        print(f"  step {i}: {times[-1]:.2f} s, loss {loss:.5f}", file=sys.stderr)
    timed = sorted(times[1:]) or times
    s = (timed[(len(timed) - 1) // 2] + timed[len(timed) // 2]) / 2  # median
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # kB -> GB
    mode = "cached latents" if args.cached_latents else "script (VAE encode per step)"
    print(f"step {s:.3f} s/step ({mode}, {res} px, batch {b}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads), peak {peak:.2f} GB")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("check", help="compare with a parity fixture folder")
    c.add_argument("fixture")
    bp = sub.add_parser("bench", help="time the step at SD1.5 size, random weights")
    bp.add_argument("--res", type=int, default=256)
    bp.add_argument("--batch", type=int, default=1)
    bp.add_argument("--iters", type=int, default=2)
    bp.add_argument("--threads", type=int, default=0)
    bp.add_argument("--cached-latents", action="store_true")
    args = ap.parse_args()
    if args.cmd == "check":
        failed = check(args.fixture)
        print("all cases pass" if not failed else f"{len(failed)} case(s) fail: {' '.join(failed)}")
        sys.exit(1 if failed else 0)
    bench(args)


if __name__ == "__main__":
    main()
