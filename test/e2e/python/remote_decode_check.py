"""Drives the server the way diffusers' remote_decode does, with the real `requests` library.

diffusers itself needs torch, which these machines cannot install; this keeps the client's wire
behaviour (requests' own query encoding of lists and booleans, the raw little-endian body, how
the answer is read back from the `shape`/`dtype` headers) and swaps torch for numpy.
Prints one JSON object with what each call returned; the vitest suite asserts on it.
"""

import json
import struct
import sys

import numpy as np
import requests

DTYPES = {"float16": np.float16, "float32": np.float32, "uint8": np.uint8}


def remote_decode(endpoint, latents, output_type="pil", image_format="jpg", partial_postprocess=False,
                  do_scaling=True, scaling_factor=None, shift_factor=None, height=None, width=None):
    params = {
        "image_format": image_format,
        "output_type": output_type,
        "partial_postprocess": partial_postprocess,
        "shape": list(latents.shape),
        "dtype": str(latents.dtype),
    }
    if do_scaling and scaling_factor is not None:
        params["scaling_factor"] = scaling_factor
    if do_scaling and shift_factor is not None:
        params["shift_factor"] = shift_factor
    if do_scaling and scaling_factor is None:
        params["do_scaling"] = do_scaling
    if height is not None and width is not None:
        params["height"] = height
        params["width"] = width
    response = requests.post(endpoint, params=params, data=latents.astype("<" + latents.dtype.str[1:]).tobytes(), headers={})
    if not response.ok:
        return {"status": response.status_code, "error": response.json()}
    out = {"status": response.status_code, "content_type": response.headers.get("content-type"), "url": response.url}
    if output_type == "pt" or "shape" in response.headers:
        shape = json.loads(response.headers["shape"])
        tensor = np.frombuffer(response.content, dtype=DTYPES[response.headers["dtype"]]).reshape(shape)
        out.update(shape=shape, dtype=response.headers["dtype"], min=float(tensor.min()), max=float(tensor.max()))
    else:
        body = response.content
        out["magic"] = body[:4].hex()
        if body[:4] == b"\x89PNG":
            out["size"] = list(struct.unpack(">II", body[16:24]))
    return out


def main(base):
    rng = np.random.default_rng(0)
    sd = f"{base}/v1/vae/sd-v1-tiny/decode"
    flux = f"{base}/v1/vae/flux-tiny/decode"
    results = {
        "png": remote_decode(sd, rng.standard_normal((1, 4, 8, 6), dtype=np.float32), image_format="png"),
        "jpg": remote_decode(sd, rng.standard_normal((1, 4, 8, 6)).astype(np.float16), scaling_factor=0.18215),
        "pt_uint8": remote_decode(sd, rng.standard_normal((2, 4, 8, 6), dtype=np.float32), output_type="pt", partial_postprocess=True),
        "pt_float16": remote_decode(sd, rng.standard_normal((1, 4, 8, 6)).astype(np.float16), output_type="pt", do_scaling=False),
        "flux_packed": remote_decode(flux, rng.standard_normal((1, 12, 64), dtype=np.float32), output_type="pt",
                                     scaling_factor=0.3611, shift_factor=0.1159, height=64, width=48),
        "flux_packed_no_size": remote_decode(flux, rng.standard_normal((1, 12, 64), dtype=np.float32), output_type="pt"),
    }
    print(json.dumps(results))


if __name__ == "__main__":
    main(sys.argv[1])
