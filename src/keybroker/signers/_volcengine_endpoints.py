"""Volcengine's default service endpoints, as the SDK's ``DefaultEndpointProvider`` picks them.

Outside a handful of "bootstrap" regions every service is served by ``open.volcengineapi.com``;
inside them, the services the SDK knows have their own host, global or regional.
"""

from __future__ import annotations

__all__ = ["UNIVERSAL_HOST", "default_host"]


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


#: Universal endpoint used for every service outside the SDK's "bootstrap" regions.
UNIVERSAL_HOST = "open.volcengineapi.com"
#: Regions where the SDK addresses each service on its own host (DefaultEndpointProvider).
_BOOTSTRAP_REGIONS = frozenset(
    {"ap-southeast-2", "ap-southeast-3", "cn-beijing-autodriving", "cn-beijing-selfdrive",
     "cn-shanghai-autodriving"}
)  # fmt: skip
#: Services the SDK knows as global (``<service>.volcengineapi.com``).
_GLOBAL_SERVICES = _words(
    "advdefence billing cdn cen certificate_service cloud_detect config cpaas cv dns dramart "
    "edx fw_center ga gtm httpdns i18n_openapi iam insight livesaas mcdn na nta organization "
    "partner pca private_zone quota resourcecenter seccenter smc spark tag tis translate "
    "veenedge vei_api volcsms waf"
)
#: Services the SDK knows as regional (``<service>.<region>.volcengineapi.com``).
_REGIONAL_SERVICES = _words(
    "acep aidap alb apig ark arkclaw auto_scaling bio cbr cfs clawsentry clb cloud_trail "
    "cloudcontrol cloudidentity cloudmonitor cr dataleap directconnect dms ecs efs emr "
    "escloud fasttrack filenas flink id inframanager kafka kms mcs milvus ml_platform mongodb "
    "natgateway origin_defence privatelink rabbitmq rds_mssql rds_mysql rds_postgresql redis "
    "rocketmq sqs storage_ebs sts tidb transitrouter vedbm vefaas vepfs vikingdb vke vmp vod "
    "volc_observe vpc vpn"
)


def default_host(service: str, region: str) -> str:
    """The host the SDK sends ``service`` in ``region`` to."""
    if region not in _BOOTSTRAP_REGIONS:
        return UNIVERSAL_HOST
    label = service.lower().replace("_", "-")
    if service in _GLOBAL_SERVICES:
        return f"{label}.volcengineapi.com"
    if service in _REGIONAL_SERVICES:
        return f"{label}.{region}.volcengineapi.com"
    return UNIVERSAL_HOST
