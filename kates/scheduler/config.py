"""Scheduler configuration: named profiles (`--profile bin-packing`) or a KubeSchedulerConfiguration file.

The file is the subset of kubescheduler.config.k8s.io/v1 that maps onto kates' framework:

    apiVersion: kubescheduler.config.k8s.io/v1
    kind: KubeSchedulerConfiguration
    percentageOfNodesToScore: 0            # 0: adaptive
    profiles:
    - schedulerName: default-scheduler
      plugins:
        multiPoint: {disabled: [{name: ImageLocality}]}
        score: {enabled: [{name: NodeResourcesFit, weight: 3}]}
      pluginConfig:
      - name: NodeResourcesFit
        args: {scoringStrategy: {type: MostAllocated}}

Each profile starts from the default plugin set; `multiPoint` enables or disables a plugin at every point it
implements, the per-point sections at one point; `weight` under `score` (or multiPoint) sets score weights.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from .framework import DEFAULT_PLUGINS, DEFAULT_SCORE_WEIGHTS, PROFILES, Profile

PROFILE_ENV = "KATES_SCHEDULER_PROFILE"
CONFIG_ENV = "KATES_SCHEDULER_CONFIG"

_POINTS = {"preEnqueue": "pre_enqueue", "queueSort": "queue_sort", "preFilter": "pre_filter", "filter": "filter",
           "postFilter": "post_filter", "preScore": "pre_score", "score": "score", "reserve": "reserve",
           "permit": "permit", "bind": "bind"}


class ConfigError(ValueError):
    pass


def named_profile(name: str) -> Profile:
    try:
        return PROFILES[name]()
    except KeyError:
        raise ConfigError(f"unknown scheduler profile {name!r}; known: {', '.join(sorted(PROFILES))}") from None


def profile_from_config(cfg: dict[str, Any], percentage: int = 0) -> Profile:
    plugins = list(DEFAULT_PLUGINS)
    weights = dict(DEFAULT_SCORE_WEIGHTS)
    disabled: dict[str, set[str]] = {}
    sections = cfg.get("plugins") or {}
    for point, section in sections.items():
        if point != "multiPoint" and point not in _POINTS:
            raise ConfigError(f"unknown extension point {point!r}")
        section = section or {}
        for entry in section.get("disabled") or ():
            name = entry.get("name", "")
            if point == "multiPoint":
                plugins = [] if name == "*" else [p for p in plugins if p != name]
            elif name == "*":
                disabled.setdefault(_POINTS[point], set()).update(plugins)
            else:
                disabled.setdefault(_POINTS[point], set()).add(name)
        for entry in section.get("enabled") or ():
            name = entry["name"]
            if name not in plugins:
                plugins.append(name)
            if point != "multiPoint":
                disabled.get(_POINTS[point], set()).discard(name)
            if "weight" in entry and point in ("multiPoint", "score"):
                weights[name] = int(entry["weight"])
    args = {pc["name"]: pc.get("args") or {} for pc in cfg.get("pluginConfig") or ()}
    pct = cfg.get("percentageOfNodesToScore", percentage)
    return Profile(scheduler_name=cfg.get("schedulerName") or "default-scheduler", plugins=tuple(plugins),
                   score_weights=weights, disabled={k: frozenset(v) for k, v in disabled.items()},
                   plugin_args=args, percentage_of_nodes_to_score=int(pct or 0))


def load_config(path: str | os.PathLike[str]) -> list[Profile]:
    doc = yaml.safe_load(Path(path).read_text()) or {}
    if doc.get("kind", "KubeSchedulerConfiguration") != "KubeSchedulerConfiguration":
        raise ConfigError(f"{path}: expected kind KubeSchedulerConfiguration")
    percentage = int(doc.get("percentageOfNodesToScore") or 0)
    profiles = [profile_from_config(p, percentage) for p in doc.get("profiles") or [{}]]
    names = [p.scheduler_name for p in profiles]
    if len(set(names)) != len(names):
        raise ConfigError(f"{path}: duplicate schedulerName in profiles")
    return profiles


def resolve_profiles(profile: str | None = None, config: str | None = None) -> list[Profile]:
    """Profiles from, in order of precedence: a config file, a profile name, the environment
    (KATES_SCHEDULER_CONFIG, KATES_SCHEDULER_PROFILE), the default."""
    config = config or os.environ.get(CONFIG_ENV)
    if config:
        return load_config(config)
    return [named_profile(profile or os.environ.get(PROFILE_ENV) or "default")]


__all__ = ["ConfigError", "resolve_profiles", "load_config", "named_profile", "profile_from_config"]
