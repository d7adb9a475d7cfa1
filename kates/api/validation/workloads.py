"""Workload controllers: Deployment, ReplicaSet, StatefulSet, DaemonSet, ReplicationController, Job, CronJob,
PodTemplate and ControllerRevision.

The shared shape is "selector + pod template": the selector must exist, be non-empty and select the template's
labels, and (in apps/v1) never change after creation. Kind-specific rules follow Kubernetes' apps and batch
validation, e.g. controllers that keep pods running require restartPolicy Always, Jobs require OnFailure/Never.
"""
from __future__ import annotations

from typing import Any

from kates.api.validation import cron, formats
from kates.api.validation.field import Errs, GoRepr, as_dict, as_list, is_int, label_selector_repr
from kates.api.validation.meta import (
    map_selector_matches, selector_is_empty, selector_is_parsable, selector_matches, validate_label_selector, validate_labels,
)
from kates.api.validation.pods import validate_pod_template

JOB_CONTROLLER_UID = "batch.kubernetes.io/controller-uid"
JOB_NAME = "batch.kubernetes.io/job-name"
LEGACY_CONTROLLER_UID = "controller-uid"
LEGACY_JOB_NAME = "job-name"

_TEMPLATE_REPR = GoRepr("core.PodTemplateSpec{...}")


def validate_int_or_percent(value: Any, path: str, errs: Errs) -> None:
    """ValidatePositiveIntOrPercent + IsNotMoreThan100Percent's shared parsing."""
    if isinstance(value, str):
        for msg in formats.percent(value):
            errs.invalid(path, GoRepr(value), msg)
    elif is_int(value):
        errs.nonnegative(path, value)
    elif value is not None:
        errs.invalid(path, value, "must be an integer or percentage (e.g '5%')")


def int_or_percent_value(value: Any) -> int:
    if is_int(value):
        return value
    if isinstance(value, str) and value.endswith("%") and value[:-1].isdigit():
        return int(value[:-1])
    return 0


def not_more_than_100_percent(value: Any, path: str, errs: Errs) -> None:
    if isinstance(value, str) and value.endswith("%") and value[:-1].isdigit() and int(value[:-1]) > 100:
        errs.invalid(path, GoRepr(value), "must not be greater than 100%")


def _validate_selector_and_template(spec: dict[str, Any], errs: Errs, *, kind_word: str, replicas: bool = True,
                                    extra_volumes: tuple[str, ...] = (), selector_required: bool = True) -> None:
    """Selector present and non-empty, matching the template; the template is a valid pod template."""
    if replicas and "replicas" in spec:
        errs.nonnegative("spec.replicas", spec.get("replicas"))
    selector = spec.get("selector")
    if not isinstance(selector, dict):
        if selector_required:
            errs.required("spec.selector")
    else:
        validate_label_selector(selector, "spec.selector", errs)
        if selector_is_empty(selector):
            errs.invalid("spec.selector", label_selector_repr(selector), f"empty selector is invalid for {kind_word}")
    template = as_dict(spec.get("template"))
    labels = as_dict(as_dict(template.get("metadata")).get("labels"))
    if isinstance(selector, dict) and not selector_is_parsable(selector):
        errs.invalid("spec.selector", label_selector_repr(selector), "invalid label selector")
    elif isinstance(selector, dict) and not selector_is_empty(selector) and not selector_matches(selector, labels):
        errs.invalid("spec.template.metadata.labels", labels, "`selector` does not match template `labels`")
    validate_pod_template(template, "spec.template", errs, extra_volumes=extra_volumes)


def _require_restart_always(spec: dict[str, Any], errs: Errs, *, deadline_msg: str) -> None:
    pod_spec = as_dict(as_dict(spec.get("template")).get("spec"))
    policy = pod_spec.get("restartPolicy")
    if policy and policy != "Always":
        errs.not_supported("spec.template.spec.restartPolicy", policy, ("Always",))
    if pod_spec.get("activeDeadlineSeconds") is not None:
        errs.invalid("spec.template.spec.activeDeadlineSeconds", pod_spec["activeDeadlineSeconds"], deadline_msg)


def _selector_immutable(new: dict[str, Any], old: dict[str, Any], errs: Errs) -> None:
    new_sel = as_dict(new.get("spec")).get("selector")
    old_sel = as_dict(old.get("spec")).get("selector")
    if _norm_selector(new_sel) != _norm_selector(old_sel):
        errs.immutable("spec.selector", label_selector_repr(new_sel))


def _norm_selector(selector: Any) -> Any:
    if not isinstance(selector, dict):
        return None
    return {"matchLabels": as_dict(selector.get("matchLabels")),
            "matchExpressions": as_list(selector.get("matchExpressions"))}


# --- apps/v1 --------------------------------------------------------------------------------------------------------

def validate_deployment(obj: dict[str, Any], errs: Errs) -> None:
    spec = as_dict(obj.get("spec"))
    _validate_selector_and_template(spec, errs, kind_word="deployment")
    _require_restart_always(spec, errs, deadline_msg="activeDeadlineSeconds in ReplicaSet is not Supported")
    strategy = as_dict(spec.get("strategy"))
    stype = strategy.get("type")
    if stype == "Recreate":
        if strategy.get("rollingUpdate") is not None:
            errs.forbidden("spec.strategy.rollingUpdate", "may not be specified when strategy `type` is 'Recreate'")
    elif stype == "RollingUpdate":
        ru = strategy.get("rollingUpdate")
        if not isinstance(ru, dict):
            errs.required("spec.strategy.rollingUpdate", "this should be defaulted and never be nil")
        else:
            path = "spec.strategy.rollingUpdate"
            validate_int_or_percent(ru.get("maxUnavailable"), f"{path}.maxUnavailable", errs)
            validate_int_or_percent(ru.get("maxSurge"), f"{path}.maxSurge", errs)
            if int_or_percent_value(ru.get("maxUnavailable")) == 0 and int_or_percent_value(ru.get("maxSurge")) == 0:
                errs.invalid(f"{path}.maxUnavailable", GoRepr(str(ru.get("maxUnavailable", 0))),
                             "may not be 0 when `maxSurge` is 0")
            not_more_than_100_percent(ru.get("maxUnavailable"), f"{path}.maxUnavailable", errs)
    else:
        errs.not_supported("spec.strategy.type", stype or "", ("Recreate", "RollingUpdate"))
    errs.nonnegative("spec.minReadySeconds", spec.get("minReadySeconds"))
    errs.nonnegative("spec.revisionHistoryLimit", spec.get("revisionHistoryLimit"))
    pds = spec.get("progressDeadlineSeconds")
    if is_int(pds):
        errs.nonnegative("spec.progressDeadlineSeconds", pds)
        min_ready = spec["minReadySeconds"] if is_int(spec.get("minReadySeconds")) else 0
        if pds <= min_ready:
            errs.invalid("spec.progressDeadlineSeconds", pds, "must be greater than minReadySeconds")


def validate_deployment_update(new: dict[str, Any], old: dict[str, Any], errs: Errs) -> None:
    _selector_immutable(new, old, errs)


def validate_replica_set(obj: dict[str, Any], errs: Errs) -> None:
    spec = as_dict(obj.get("spec"))
    # Kubernetes really says "deployment" here for ReplicaSets too.
    _validate_selector_and_template(spec, errs, kind_word="deployment")
    _require_restart_always(spec, errs, deadline_msg="activeDeadlineSeconds in ReplicaSet is not Supported")
    errs.nonnegative("spec.minReadySeconds", spec.get("minReadySeconds"))


def validate_stateful_set(obj: dict[str, Any], errs: Errs) -> None:
    spec = as_dict(obj.get("spec"))
    policy = spec.get("podManagementPolicy")
    if not policy:
        errs.required("spec.podManagementPolicy")
    elif policy not in ("OrderedReady", "Parallel"):
        errs.invalid("spec.podManagementPolicy", policy, "must be 'OrderedReady' or 'Parallel'")
    strategy = as_dict(spec.get("updateStrategy"))
    stype = strategy.get("type")
    if not stype:
        errs.required("spec.updateStrategy")
    elif stype == "OnDelete":
        if strategy.get("rollingUpdate") is not None:
            errs.invalid("spec.updateStrategy.rollingUpdate", strategy["rollingUpdate"],
                         "only allowed for updateStrategy 'RollingUpdate'")
    elif stype == "RollingUpdate":
        ru = as_dict(strategy.get("rollingUpdate"))
        errs.nonnegative("spec.updateStrategy.rollingUpdate.partition", ru.get("partition"))
        if ru.get("maxUnavailable") is not None:
            validate_int_or_percent(ru["maxUnavailable"], "spec.updateStrategy.rollingUpdate.maxUnavailable", errs)
            if int_or_percent_value(ru["maxUnavailable"]) == 0:
                errs.invalid("spec.updateStrategy.rollingUpdate.maxUnavailable", GoRepr(str(ru["maxUnavailable"])),
                             "must be greater than 0")
    else:
        errs.invalid("spec.updateStrategy", strategy, "must be 'RollingUpdate' or 'OnDelete'")
    retention = spec.get("persistentVolumeClaimRetentionPolicy")
    if isinstance(retention, dict):
        for key in ("whenDeleted", "whenScaled"):
            value = retention.get(key)
            if value not in ("Retain", "Delete"):
                errs.not_supported(f"spec.persistentVolumeClaimRetentionPolicy.{key}", value or "",
                                   ("Retain", "Delete"))
    ordinals = spec.get("ordinals")
    if isinstance(ordinals, dict):
        errs.nonnegative("spec.ordinals.start", ordinals.get("start"))
    errs.nonnegative("spec.minReadySeconds", spec.get("minReadySeconds"))
    claims = []
    for i, claim in enumerate(as_list(spec.get("volumeClaimTemplates"))):
        cname = as_dict(as_dict(claim).get("metadata")).get("name") or ""
        if not cname:
            errs.required(f"spec.volumeClaimTemplates[{i}].metadata.name")
        claims.append(cname)
    service_name = spec.get("serviceName")
    if isinstance(service_name, str) and service_name:
        for msg in formats.dns1123_label(service_name):
            errs.invalid("spec.serviceName", service_name, msg)
    _validate_selector_and_template(spec, errs, kind_word="statefulset", extra_volumes=tuple(claims))
    pod_spec = as_dict(as_dict(spec.get("template")).get("spec"))
    if pod_spec.get("restartPolicy") and pod_spec["restartPolicy"] != "Always":
        errs.not_supported("spec.template.spec.restartPolicy", pod_spec["restartPolicy"], ("Always",))
    if pod_spec.get("activeDeadlineSeconds") is not None:
        errs.invalid("spec.template.spec.activeDeadlineSeconds", pod_spec["activeDeadlineSeconds"],
                     "must not be specified")


_STS_MUTABLE = ("replicas", "ordinals", "template", "updateStrategy", "revisionHistoryLimit",
                "persistentVolumeClaimRetentionPolicy", "minReadySeconds")


def validate_stateful_set_update(new: dict[str, Any], old: dict[str, Any], errs: Errs) -> None:
    new_spec = {k: v for k, v in as_dict(new.get("spec")).items() if k not in _STS_MUTABLE}
    old_spec = {k: v for k, v in as_dict(old.get("spec")).items() if k not in _STS_MUTABLE}
    if _drop_nulls(new_spec) != _drop_nulls(old_spec):
        errs.forbidden("spec", "updates to statefulset spec for fields other than 'replicas', 'ordinals', "
                               "'template', 'updateStrategy', 'revisionHistoryLimit', "
                               "'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden")


def _drop_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_nulls(v) for v in value]
    return value


def validate_daemon_set(obj: dict[str, Any], errs: Errs) -> None:
    spec = as_dict(obj.get("spec"))
    _validate_selector_and_template(spec, errs, kind_word="daemonset", replicas=False)
    _require_restart_always(spec, errs, deadline_msg="activeDeadlineSeconds in DaemonSet is not Supported")
    errs.nonnegative("spec.minReadySeconds", spec.get("minReadySeconds"))
    errs.nonnegative("spec.templateGeneration", spec.get("templateGeneration"))
    errs.nonnegative("spec.revisionHistoryLimit", spec.get("revisionHistoryLimit"))
    strategy = as_dict(spec.get("updateStrategy"))
    stype = strategy.get("type")
    if stype == "RollingUpdate":
        ru = strategy.get("rollingUpdate")
        if not isinstance(ru, dict):
            errs.required("spec.updateStrategy.rollingUpdate")
            return
        path = "spec.updateStrategy.rollingUpdate"
        for key in ("maxUnavailable", "maxSurge"):
            validate_int_or_percent(ru.get(key), f"{path}.{key}", errs)
            not_more_than_100_percent(ru.get(key), f"{path}.{key}", errs)
        unavailable = int_or_percent_value(ru.get("maxUnavailable")) != 0
        surge = int_or_percent_value(ru.get("maxSurge")) != 0
        if unavailable and surge:
            errs.invalid(f"{path}.maxSurge", GoRepr(str(ru.get("maxSurge"))),
                         "may not be set when maxUnavailable is non-zero")
        elif not unavailable and not surge:
            errs.required(f"{path}.maxUnavailable", "cannot be 0 when maxSurge is 0")
    elif stype != "OnDelete":
        errs.not_supported("spec.updateStrategy.type", stype or "", ("OnDelete", "RollingUpdate"))


def validate_controller_revision(obj: dict[str, Any], errs: Errs) -> None:
    if obj.get("data") is None:
        errs.required("data", "data is mandatory")
    errs.nonnegative("revision", obj.get("revision"))


def validate_controller_revision_update(new: dict[str, Any], old: dict[str, Any], errs: Errs) -> None:
    if new.get("data") != old.get("data"):
        errs.immutable("data", GoRepr("runtime.RawExtension{...}"))


# --- core/v1 --------------------------------------------------------------------------------------------------------

def validate_replication_controller(obj: dict[str, Any], errs: Errs) -> None:
    spec = as_dict(obj.get("spec"))
    errs.nonnegative("spec.replicas", spec.get("replicas"))
    errs.nonnegative("spec.minReadySeconds", spec.get("minReadySeconds"))
    selector = as_dict(spec.get("selector"))
    if not selector:
        errs.required("spec.selector")
    else:
        validate_labels(selector, "spec.selector", errs)
    template = spec.get("template")
    if not isinstance(template, dict):
        errs.required("spec.template")
        return
    labels = as_dict(as_dict(template.get("metadata")).get("labels"))
    if selector and not map_selector_matches(selector, labels):
        errs.invalid("spec.template.metadata.labels", labels, "`selector` does not match template `labels`")
    validate_pod_template(template, "spec.template", errs)
    _require_restart_always(spec, errs, deadline_msg="activeDeadlineSeconds in ReplicationController is not "
                                                     "Supported")


def validate_pod_template_object(obj: dict[str, Any], errs: Errs) -> None:
    validate_pod_template(obj.get("template"), "template", errs)


# --- batch/v1 -------------------------------------------------------------------------------------------------------

def _validate_job_spec(spec: dict[str, Any], path: str, errs: Errs) -> None:
    for key in ("parallelism", "completions", "activeDeadlineSeconds", "backoffLimit", "ttlSecondsAfterFinished",
                "backoffLimitPerIndex", "maxFailedIndexes"):
        errs.nonnegative(f"{path}.{key}", spec.get(key))
    mode = spec.get("completionMode")
    if mode is not None and mode not in ("NonIndexed", "Indexed"):
        errs.not_supported(f"{path}.completionMode", mode, ("NonIndexed", "Indexed"))
    if mode == "Indexed" and spec.get("completions") is None:
        errs.required(f"{path}.completions", "when completion mode is Indexed")
    policy = spec.get("podReplacementPolicy")
    if policy is not None and policy not in ("TerminatingOrFailed", "Failed"):
        errs.not_supported(f"{path}.podReplacementPolicy", policy, ("Failed", "TerminatingOrFailed"))
    if spec.get("manualSelector") is True:
        if not isinstance(spec.get("selector"), dict):
            errs.required(f"{path}.selector")
    if isinstance(spec.get("selector"), dict):
        validate_label_selector(spec["selector"], f"{path}.selector", errs)
    template = as_dict(spec.get("template"))
    labels = as_dict(as_dict(template.get("metadata")).get("labels"))
    selector = spec.get("selector")
    if isinstance(selector, dict) and not selector_matches(selector, labels):
        errs.invalid(f"{path}.template.metadata.labels", labels, "`selector` does not match template `labels`")
    validate_pod_template(template, f"{path}.template", errs)
    restart = as_dict(template.get("spec")).get("restartPolicy")
    if restart not in ("OnFailure", "Never"):
        errs.not_supported(f"{path}.template.spec.restartPolicy", restart or "", ("OnFailure", "Never"))


def validate_job(obj: dict[str, Any], errs: Errs) -> None:
    spec = as_dict(obj.get("spec"))
    _validate_job_spec(spec, "spec", errs)
    _validate_generated_selector(obj, errs)


def _validate_generated_selector(obj: dict[str, Any], errs: Errs) -> None:
    """Unless manualSelector, the selector is the server's own (controller-uid), added by prepare_for_create."""
    spec = as_dict(obj.get("spec"))
    if spec.get("manualSelector") is True or not isinstance(spec.get("selector"), dict):
        return
    meta = as_dict(obj.get("metadata"))
    uid, name = meta.get("uid") or "", meta.get("name") or ""
    if not uid:
        errs.invalid("spec.selector", label_selector_repr(spec["selector"]), "`selector` not auto-generated")
        return
    tmeta = as_dict(as_dict(spec.get("template")).get("metadata"))
    labels = as_dict(tmeta.get("labels"))
    for key, expected in ((LEGACY_CONTROLLER_UID, uid), (LEGACY_JOB_NAME, name), (JOB_CONTROLLER_UID, uid),
                          (JOB_NAME, name)):
        if key not in labels:
            errs.required(f"spec.template.metadata.labels[{key}]")
        elif labels[key] != expected:
            errs.invalid("spec.template.metadata", labels, f"must be '{expected}'")
    if _norm_selector(spec["selector"]) != {"matchLabels": {JOB_CONTROLLER_UID: uid}, "matchExpressions": []}:
        errs.invalid("spec.selector", label_selector_repr(spec["selector"]), "`selector` not auto-generated")


_JOB_SCHEDULING_FIELDS = ("nodeSelector", "affinity", "tolerations", "schedulingGates")


def validate_job_update(new: dict[str, Any], old: dict[str, Any], errs: Errs) -> None:
    new_spec, old_spec = as_dict(new.get("spec")), as_dict(old.get("spec"))
    _selector_immutable(new, old, errs)
    for key in ("completionMode", "podFailurePolicy", "backoffLimitPerIndex", "manualSelector"):
        if new_spec.get(key) != old_spec.get(key):
            errs.immutable(f"spec.{key}", new_spec.get(key))
    completions_changed = new_spec.get("completions") != old_spec.get("completions")
    if completions_changed:
        # Only Indexed jobs may scale elastically, keeping completions == parallelism.
        if new_spec.get("completionMode") != "Indexed" or new_spec.get("completions") != new_spec.get("parallelism"):
            errs.immutable("spec.completions", new_spec.get("completions"))
    new_tpl, old_tpl = as_dict(new_spec.get("template")), as_dict(old_spec.get("template"))
    if new_tpl != old_tpl:
        # A suspended job that never started may change its pods' scheduling directives and template metadata.
        suspended = new_spec.get("suspend") is True and not as_dict(old.get("status")).get("startTime")
        if suspended:
            new_tpl = {**new_tpl, "metadata": None,
                       "spec": {k: v for k, v in as_dict(new_tpl.get("spec")).items()
                                if k not in _JOB_SCHEDULING_FIELDS}}
            old_tpl = {**old_tpl, "metadata": None,
                       "spec": {k: v for k, v in as_dict(old_tpl.get("spec")).items()
                                if k not in _JOB_SCHEDULING_FIELDS}}
        if new_tpl != old_tpl:
            errs.immutable("spec.template", _TEMPLATE_REPR)


def validate_cron_job(obj: dict[str, Any], errs: Errs) -> None:
    name = as_dict(obj.get("metadata")).get("name") or ""
    if isinstance(name, str) and len(name) > 52:
        # Job names get an 11-character suffix and must stay label values (63).
        errs.invalid("metadata.name", name, "must be no more than 52 characters")
    _validate_cron_job_spec(obj, errs, None)


def validate_cron_job_update(new: dict[str, Any], old: dict[str, Any], errs: Errs) -> None:
    """The spec rules again, knowing the old object: a TZ= prefix that was already there stays legal."""
    _validate_cron_job_spec(new, errs, old)


def _validate_cron_job_spec(obj: dict[str, Any], errs: Errs, old: dict[str, Any] | None) -> None:
    spec = as_dict(obj.get("spec"))
    schedule = spec.get("schedule") or ""
    old_schedule = (as_dict(as_dict(old).get("spec")).get("schedule") or "") if old else ""
    if not schedule:
        errs.required("spec.schedule")
    else:
        try:
            cron.parse(schedule)
        except cron.CronError as e:
            errs.invalid("spec.schedule", schedule, str(e))
        allow_tz = "TZ" in old_schedule
        if allow_tz and "TZ" in schedule and spec.get("timeZone") is not None:
            errs.invalid("spec.schedule", schedule, "cannot use both timeZone field and TZ or CRON_TZ in schedule")
        elif not allow_tz and "TZ" in schedule:
            errs.invalid("spec.schedule", schedule, "cannot use TZ or CRON_TZ in schedule, use timeZone field instead")
    tz = spec.get("timeZone")
    if isinstance(tz, str) and (old is None or tz != as_dict(as_dict(old).get("spec")).get("timeZone")):
        _validate_time_zone(tz, errs)
    errs.nonnegative("spec.startingDeadlineSeconds", spec.get("startingDeadlineSeconds"))
    errs.nonnegative("spec.successfulJobsHistoryLimit", spec.get("successfulJobsHistoryLimit"))
    errs.nonnegative("spec.failedJobsHistoryLimit", spec.get("failedJobsHistoryLimit"))
    policy = spec.get("concurrencyPolicy")
    if not policy:
        errs.required("spec.concurrencyPolicy")
    elif policy not in ("Allow", "Forbid", "Replace"):
        errs.not_supported("spec.concurrencyPolicy", policy, ("Allow", "Forbid", "Replace"))
    job_template = as_dict(spec.get("jobTemplate"))
    jt_meta = as_dict(job_template.get("metadata"))
    validate_labels(jt_meta.get("labels"), "spec.jobTemplate.labels", errs)
    job_spec = as_dict(job_template.get("spec"))
    _validate_job_spec(job_spec, "spec.jobTemplate.spec", errs)


def _validate_time_zone(tz: str, errs: Errs) -> None:
    if tz.lower() == "local" or tz == "":
        errs.invalid("spec.timeZone", tz, "unknown time zone " + tz)
        return
    try:
        import zoneinfo
        zoneinfo.ZoneInfo(tz)
    except Exception:  # noqa: BLE001 - any lookup failure is an unknown zone
        errs.invalid("spec.timeZone", tz, "unknown time zone " + tz)
