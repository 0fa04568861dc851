"""Go's ``encoding/json`` output for go-kms-wrapping's ``BlobInfo`` and ``KeyInfo`` structs, and
Go's ``url.QueryEscape``, re-done in Python so tests hold byte-identical data.

``json.Marshal`` writes struct fields in declaration order under their json tag names, leaves
out ``omitempty`` zero values, encodes ``[]byte`` as standard padded base64 and ``uint64`` as a
number, emits no whitespace, and escapes ``<``, ``>``, ``&``, U+2028 and U+2029 as ``\\u00XX``
(HTML-safe); other non-ASCII text is written as UTF-8.
"""

from __future__ import annotations

import base64
import json
import urllib.parse

__all__ = ["blob_info", "query_escape"]

# BlobInfo: ciphertext, iv, hmac, wrapped, key_info (plaintext is never set when stored)
# KeyInfo: mechanism, hmac_mechanism, key_id, hmac_key_id, wrapped_key, flags
_HTML = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def _string(text: str) -> str:
    out = json.dumps(text, ensure_ascii=False)
    for char, escaped in _HTML.items():
        out = out.replace(char, escaped)
    return out


def _bytes(data: bytes) -> str:
    return '"' + base64.b64encode(data).decode() + '"'


def blob_info(
    ciphertext: bytes, iv: bytes, *, mechanism: int, key_id: str, wrapped_key: bytes
) -> bytes:
    """``json.Marshal(&wrapping.BlobInfo{Ciphertext, Iv, KeyInfo: &wrapping.KeyInfo{...}})``."""
    key_info = []
    if mechanism:
        key_info.append(f'"mechanism":{mechanism}')
    if key_id:
        key_info.append(f'"key_id":{_string(key_id)}')
    if wrapped_key:
        key_info.append(f'"wrapped_key":{_bytes(wrapped_key)}')
    fields = []
    if ciphertext:
        fields.append(f'"ciphertext":{_bytes(ciphertext)}')
    if iv:
        fields.append(f'"iv":{_bytes(iv)}')
    fields.append('"key_info":{' + ",".join(key_info) + "}")
    return ("{" + ",".join(fields) + "}").encode()


def query_escape(value: str) -> str:
    """Go's ``url.QueryEscape``: keeps ``A-Z a-z 0-9 - _ . ~``, writes a space as ``+`` and
    every other byte of the UTF-8 encoding as ``%XX`` (upper case)."""
    return urllib.parse.quote_plus(value, safe="")
