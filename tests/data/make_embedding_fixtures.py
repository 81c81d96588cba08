"""Generates the tiny torch.save fixtures read by tests/test_pickle.cpp and test_embeddings.cpp.

Run once with Debian's Python (python3-torch 1.13) and commit the outputs:
    cd tests/data && /usr/bin/python3 make_embedding_fixtures.py
Values follow ramp(n, d) = arange(n*d).reshape(n, d) * 0.25 - 1.0 (exact in fp16), d = 16.
"""
import collections
import os

import torch

D = 16


def ramp(n, d=D, dtype=torch.float32):
    return (torch.arange(n * d, dtype=torch.float32).reshape(n, d) * 0.25 - 1.0).to(dtype)


def a1111(param, name, checkpoint):
    return {
        "string_to_token": {"*": 265},
        "string_to_param": param,
        "name": name,
        "step": 500,
        "sd_checkpoint": checkpoint,
        "sd_checkpoint_name": "v1-5-pruned",
    }


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def main():
    # A1111 with a plain tensor that requires grad (rebuilt with an OrderedDict of hooks).
    vec = ramp(2).requires_grad_(True)
    torch.save(a1111({"*": vec}, "cat-toy", "abc123"), "a1111_tensor.pt")
    # Original textual_inversion / old A1111: string_to_param is an nn.ParameterDict.
    pd = torch.nn.ParameterDict({"*": torch.nn.Parameter(ramp(3))})
    torch.save(a1111(pd, "paramdict", None), "a1111_paramdict.pt")
    # OrderedDict at the top, fp16 storage, a view with a storage offset (rows 1..2 of 4).
    big = ramp(4, dtype=torch.float16)
    od = collections.OrderedDict(a1111({"*": big[1:3]}, "ordered", None))
    torch.save(od, "a1111_ordered.pt")
    # diffusers learned_embeds.bin: {placeholder: [d]}.
    torch.save({"<cat>": ramp(1)[0]}, "learned_embeds.bin")
    # A non-contiguous tensor (transposed) and assorted scalars for the unpickler tests.
    torch.save({"t": ramp(2, 8).t(), "f": 1.5, "i": -7, "big": 2**40, "b": b"\x00\x01",
                "l": [1, 2, 3], "tup": (True, False, None), 5: "int key"}, "misc.pt")
    # A disallowed global: must be refused, never executed.
    torch.save({"x": Evil()}, "evil.pt")
    # Pre-1.6 serialization (not a zip).
    torch.save({"x": ramp(1)}, "legacy.pt", _use_new_zipfile_serialization=False)


if __name__ == "__main__":
    main()
