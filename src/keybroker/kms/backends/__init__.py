"""Key wrappers, one module per external KMS or HSM: ``aws`` (AWS KMS), ``azure`` (Key Vault),
``gcp`` (Cloud KMS), ``vault`` (OpenBao/Vault Transit), ``kmip``, ``pkcs11`` and ``local``
(a key file).  Each implements :class:`keybroker.kms.base.KeyWrapper` and is found by its URI
scheme through :mod:`keybroker.kms.registry`; a missing SDK raises ``MissingExtra`` naming the
extra to install.  Nothing is imported here, so a build without an SDK loads the rest.
"""
