"""The AWS parser's refusals: each malformed Authorization or presigned query is a
MalformedSignature with a precise message that never shows the signature.  (The properties —
botocore-signed requests verify, a changed signed part fails, garbage is only malformed — are
in the conformance suite, ``test_conformance.py``.)"""

from __future__ import annotations

import pytest

from keybroker.errors import MalformedSignature
from keybroker.signers.aws import SIGNER
from keybroker.signers.base import SigningRequest
from tests.signers.conformance.aws import SCOPE, SIG, STAMP
from tests.signers.conformance.aws import header_request as _header
from tests.signers.conformance.aws import query_request as _query


def _auth(credential: str = SCOPE, signed: str = "host;x-amz-date", sig: str = SIG) -> str:
    return f"AWS4-HMAC-SHA256 Credential={credential}, SignedHeaders={signed}, Signature={sig}"


MALFORMED = [
    (_header("AWS4-HMAC-SHA256"), "missing Credential"),
    (_header("AWS4-HMAC-SHA256X Credential=a"), "does not use AWS4-HMAC-SHA256"),
    (_header("Bearer abc"), "does not use AWS4-HMAC-SHA256"),
    (_header(_auth() + ", Foo=bar"), "unknown Authorization component 'Foo'"),
    (_header(_auth() + ", Signature=" + SIG), "repeats Signature"),
    (_header(_auth() + " garbage"), "component without '='"),
    (_header(_auth(sig="xyz")), "Signature must be 64 hexadecimal digits"),
    (_header(_auth(sig="a" * 63)), "Signature must be 64 hexadecimal digits"),
    (_header(_auth(credential="AKID/20240506/eu-west-1/s3")), "Credential must be"),
    (_header(_auth(credential="AKID/20240507/eu-west-1/s3/aws4_request")), "does not match"),
    (_header(_auth(credential="AKID/20240506/eu-west-1!/s3/aws4_request")), "region is not valid"),
    (_header(_auth(credential="AKID/20240506/eu-west-1//aws4_request")), "service is not valid"),
    (_header(_auth(credential="AKID/20240506/eu-west-1/s3/aws5_request")), "must end with"),
    (_header(_auth(credential="/20240506/eu-west-1/s3/aws4_request")), "access key is empty"),
    (_header(_auth(signed="x-amz-date")), "must include host"),
    (_header(_auth(signed="host;;x-amz-date")), "invalid header name"),
    (_header(_auth(signed="host;host")), "lists a header twice"),
    (_header(_auth(signed="host;authorization")), "must not include authorization"),
    (_header(_auth(signed="host;x-n"), **{"X-N": "caf\u00e9"}), "non-ASCII value"),
    (_header(_auth(signed="host;x-n"), **{"X-N": "a\udcff"}), "non-ASCII value"),
    (_header(_auth(), **{"X-Amz-Date": "2024-05-06T07:08:09Z"}), "X-Amz-Date must look like"),
    (_header(_auth(), **{"X-Amz-Date": "20241306T070809Z"}), "not a valid date"),
    (_header(_auth(), **{"x-amz-content-sha256": "abc"}), "x-amz-content-sha256 must be"),
    (_header("AWS4-HMAC-SHA256 " + "x" * 9000), "too long"),
    (_query(**{"X-Amz-Expires": "604801"}), "between 1 and 604800"),
    (_query(**{"X-Amz-Expires": "1e3"}), "whole number"),
    (_query(**{"X-Amz-Expires": "-5"}), "whole number"),
    (_query(**{"X-Amz-Expires": "\u0661\u0662"}), "whole number"),
    (_query(**{"X-Amz-Algorithm": "AWS4-HMAC-SHA512"}), "X-Amz-Algorithm must be"),
    (_query(**{"X-Amz-Signature": "<drop>"}), "missing X-Amz-Signature"),
    (_query(**{"X-Amz-Date": "yesterday"}), "X-Amz-Date must look like"),
    (_query(**{"X-Amz-SignedHeaders": "content-type"}), "must include host"),
]


@pytest.mark.parametrize(("req", "message"), MALFORMED)
def test_malformed_input_has_a_precise_message(req: SigningRequest, message: str) -> None:
    with pytest.raises(MalformedSignature, match=message) as err:
        SIGNER.parse(req)
    assert SIG not in str(err.value)


def test_repeated_query_auth_parameter_is_malformed() -> None:
    req = _query()
    req.query += "&X-Amz-Date=" + STAMP
    with pytest.raises(MalformedSignature, match="repeats X-Amz-Date"):
        SIGNER.parse(req)


def test_invalid_utf8_in_the_query_is_malformed() -> None:
    req = _header(_auth())
    req.query = "a=%ff"
    with pytest.raises(MalformedSignature, match="not valid UTF-8"):
        SIGNER.parse(req)
