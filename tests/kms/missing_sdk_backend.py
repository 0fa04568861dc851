"""A backend module whose SDK is not installed (for the MissingExtra test)."""

import keybroker_test_absent_sdk  # type: ignore[import-not-found]  # noqa: F401
