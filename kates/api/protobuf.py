"""Decode Kubernetes protobuf request bodies (`application/vnd.kubernetes.protobuf`) into JSON-shaped dicts.

Why this exists: the real kubectl's typed clients send built-in objects as protobuf, not JSON — `kubectl create
deployment|configmap|secret|service|job|cronjob|namespace|quota|serviceaccount|role|rolebinding|clusterrole|
clusterrolebinding|poddisruptionbudget|priorityclass|ingress|token`, `kubectl autoscale`, `kubectl auth can-i`
and `whoami`, `kubectl debug --copy-to`, `kubectl create job --from=cronjob/...`, and the PUT of `kubectl
certificate approve|deny`. Everything else in kates speaks the JSON form, so the API server calls `decode` once
at its edge and from then on the object is the same dict its JSON body would have parsed to.

How: a small hand-written proto2 wire-format reader (varints, length-delimited, fixed32/64), and one table per
message saying, for each field number, the field's JSON name and type. The field numbers are facts of the
Kubernetes protocol (the `generated.proto` files of k8s.io/api and k8s.io/apimachinery); the tables are
written here by hand, in a compact notation (see `_parse_fields`), for the kinds kubectl sends and for the
1.32 fields of each message. A field number a table lacks is skipped and logged at debug level.

JSON form rules (what Go's encoding/json does with the Kubernetes types): a sub-message present on the wire is
always kept, even empty (`emptyDir: {}`, `status: {}`), since Go marshals every non-nil struct; scalars equal
to their zero value are dropped (`omitempty`), except fields marked `!` — Go pointers (`replicas: 0`,
`runAsUser: 0`, `automountServiceAccountToken: false` are meaningful and only on the wire when set) and the
few non-omitempty scalars (`PriorityClass.value: 0`). A zero `metav1.Time` (empty message; JSON `null`) is
dropped.
"""
from __future__ import annotations

import base64
import dataclasses
import datetime
import logging
import re
import struct
from collections.abc import Iterator
from typing import Any

import orjson

from kates.api.errors import BadRequest, UnsupportedMediaType

log = logging.getLogger(__name__)

MAGIC = b"k8s\x00"
CONTENT_TYPE = "application/vnd.kubernetes.protobuf"

# Field types in the tables: scalars, Kubernetes' special messages (their JSON form is not an object), and
# message names. `*T` is a repeated T, `{T}` a map<string, T>.
_VARINT_TYPES = {"i", "b"}          # int32/int64 (two's complement varint), bool
_SPECIAL_TYPES = {
    "s",     # string
    "y",     # bytes -> base64, as Go's JSON gives []byte
    "d",     # double (fixed64)
    "q",     # resource.Quantity {1: string} -> "500m"
    "ios",   # intstr.IntOrString {1: type (0 int, 1 string), 2: intVal, 3: strVal} -> int | str
    "t",     # metav1.Time {1: seconds, 2: nanos} -> "2024-01-02T03:04:05Z"
    "mt",    # metav1.MicroTime -> "2024-01-02T03:04:05.123456Z"
    "f1",    # metav1.FieldsV1 {1: Raw JSON bytes} -> parsed JSON
    "raw",   # runtime.RawExtension {1: raw bytes} -> parsed JSON (or a nested enveloped object)
    "sl",    # a message whose only field is `repeated string items = 1` (UserInfo's ExtraValue) -> list
}

_ABSENT = object()   # what a special decoder returns for a value Go's JSON renders as null (zero Time...)


# --------------------------------------------------------------------------------------------------------
# The message tables. Each field is `jsonName=number[:type][flags]`; the type defaults to `s` (string);
# flag `!` keeps the field when it is zero (Go pointer or non-omitempty field), flag `^` inlines the
# sub-message's fields into this object (Go embedded struct, `json:",inline"`). Fields are listed in Go struct
# order, which is also the order of the keys in the decoded dict. Message names resolve in the message's own
# package first, then `meta`, then `core`.
# --------------------------------------------------------------------------------------------------------

_META = {
    "ObjectMeta": "name=1 generateName=2 namespace=3 selfLink=4 uid=5 resourceVersion=6 generation=7:i "
                  "creationTimestamp=8:t deletionTimestamp=9:t deletionGracePeriodSeconds=10:i! labels=11:{s} "
                  "annotations=12:{s} ownerReferences=13:*OwnerReference finalizers=14:*s "
                  "managedFields=17:*ManagedFieldsEntry",
    "OwnerReference": "apiVersion=5! kind=1! name=3! uid=4! controller=6:b! blockOwnerDeletion=7:b!",
    "ManagedFieldsEntry": "manager=1 operation=2 apiVersion=3 time=4:t fieldsType=6 fieldsV1=7:f1 subresource=8",
    "LabelSelector": "matchLabels=1:{s} matchExpressions=2:*LabelSelectorRequirement",
    "LabelSelectorRequirement": "key=1! operator=2! values=3:*s",
    "FieldSelectorRequirement": "key=1! operator=2! values=3:*s",
    "Condition": "type=1! status=2! observedGeneration=3:i lastTransitionTime=4:t reason=5! message=6!",
    "DeleteOptions": "gracePeriodSeconds=1:i! preconditions=2:Preconditions orphanDependents=3:b! "
                     "propagationPolicy=4! dryRun=5:*s ignoreStoreReadErrorWithClusterBreakingPotential=6:b!",
    "Preconditions": "uid=1! resourceVersion=2!",
}

_CONTAINER = (
    "name=1! image=2 command=3:*s args=4:*s workingDir=5 ports=6:*ContainerPort envFrom=19:*EnvFromSource "
    "env=7:*EnvVar resources=8:ResourceRequirements resizePolicy=23:*ContainerResizePolicy restartPolicy=24! "
    "volumeMounts=9:*VolumeMount volumeDevices=21:*VolumeDevice livenessProbe=10:Probe readinessProbe=11:Probe "
    "startupProbe=22:Probe lifecycle=12:Lifecycle terminationMessagePath=13 terminationMessagePolicy=20 "
    "imagePullPolicy=14 securityContext=15:SecurityContext stdin=16:b stdinOnce=17:b tty=18:b")

_KEY_SELECTOR = "localObjectReference=1:LocalObjectReference^ key=2! optional=3:b!"
_POD_AFFINITY = ("requiredDuringSchedulingIgnoredDuringExecution=1:*PodAffinityTerm "
                 "preferredDuringSchedulingIgnoredDuringExecution=2:*WeightedPodAffinityTerm")
_SECURITY_PROFILE = "type=1! localhostProfile=2!"
_TYPE_STATUS_TIME_REASON = "type=1! status=2! lastTransitionTime=3:t reason=4 message=5"

_CORE = {
    # Pods and their templates.
    "Pod": "metadata=1:ObjectMeta spec=2:PodSpec status=3:PodStatus",
    "PodTemplate": "metadata=1:ObjectMeta template=2:PodTemplateSpec",
    "PodTemplateSpec": "metadata=1:ObjectMeta spec=2:PodSpec",
    "PodSpec": "volumes=1:*Volume initContainers=20:*Container containers=2:*Container "
               "ephemeralContainers=34:*EphemeralContainer restartPolicy=3 terminationGracePeriodSeconds=4:i! "
               "activeDeadlineSeconds=5:i! dnsPolicy=6 nodeSelector=7:{s} serviceAccountName=8 serviceAccount=9 "
               "automountServiceAccountToken=21:b! nodeName=10 hostNetwork=11:b hostPID=12:b hostIPC=13:b "
               "shareProcessNamespace=27:b! securityContext=14:PodSecurityContext "
               "imagePullSecrets=15:*LocalObjectReference hostname=16 subdomain=17 affinity=18:Affinity "
               "schedulerName=19 tolerations=22:*Toleration hostAliases=23:*HostAlias priorityClassName=24 "
               "priority=25:i! dnsConfig=26:PodDNSConfig readinessGates=28:*PodReadinessGate "
               "runtimeClassName=29! enableServiceLinks=30:b! preemptionPolicy=31! overhead=32:{q} "
               "topologySpreadConstraints=33:*TopologySpreadConstraint setHostnameAsFQDN=35:b! os=36:PodOS "
               "hostUsers=37:b! schedulingGates=38:*PodSchedulingGate resourceClaims=39:*PodResourceClaim "
               "resources=40:ResourceRequirements",
    "Container": _CONTAINER,
    "EphemeralContainer": "ephemeralContainerCommon=1:EphemeralContainerCommon^ targetContainerName=2",
    "EphemeralContainerCommon": _CONTAINER,
    "ContainerPort": "name=1 hostPort=2:i containerPort=3:i! protocol=4 hostIP=5",
    "ContainerResizePolicy": "resourceName=1! restartPolicy=2!",
    "EnvFromSource": "prefix=1 configMapRef=2:ConfigMapEnvSource secretRef=3:SecretEnvSource",
    "ConfigMapEnvSource": "localObjectReference=1:LocalObjectReference^ optional=2:b!",
    "SecretEnvSource": "localObjectReference=1:LocalObjectReference^ optional=2:b!",
    "EnvVar": "name=1! value=2 valueFrom=3:EnvVarSource",
    "EnvVarSource": "fieldRef=1:ObjectFieldSelector resourceFieldRef=2:ResourceFieldSelector "
                    "configMapKeyRef=3:ConfigMapKeySelector secretKeyRef=4:SecretKeySelector",
    "ObjectFieldSelector": "apiVersion=1 fieldPath=2!",
    "ResourceFieldSelector": "containerName=1 resource=2! divisor=3:q",
    "ConfigMapKeySelector": _KEY_SELECTOR,
    "SecretKeySelector": _KEY_SELECTOR,
    "LocalObjectReference": "name=1",
    "ResourceRequirements": "limits=1:{q} requests=2:{q} claims=3:*ResourceClaim",
    "ResourceClaim": "name=1! request=2",
    "VolumeMount": "name=1! readOnly=2:b recursiveReadOnly=7! mountPath=3! subPath=4 mountPropagation=5! "
                   "subPathExpr=6",
    "VolumeDevice": "name=1! devicePath=2!",
    "Probe": "handler=1:ProbeHandler^ initialDelaySeconds=2:i timeoutSeconds=3:i periodSeconds=4:i "
             "successThreshold=5:i failureThreshold=6:i terminationGracePeriodSeconds=7:i!",
    "ProbeHandler": "exec=1:ExecAction httpGet=2:HTTPGetAction tcpSocket=3:TCPSocketAction grpc=4:GRPCAction",
    "ExecAction": "command=1:*s",
    "HTTPGetAction": "path=1 port=2:ios host=3 scheme=4 httpHeaders=5:*HTTPHeader",
    "HTTPHeader": "name=1! value=2!",
    "TCPSocketAction": "port=1:ios host=2",
    "GRPCAction": "port=1:i! service=2!",
    "Lifecycle": "postStart=1:LifecycleHandler preStop=2:LifecycleHandler",
    "LifecycleHandler": "exec=1:ExecAction httpGet=2:HTTPGetAction tcpSocket=3:TCPSocketAction "
                        "sleep=4:SleepAction",
    "SleepAction": "seconds=1:i!",
    "SecurityContext": "capabilities=1:Capabilities privileged=2:b! seLinuxOptions=3:SELinuxOptions "
                       "windowsOptions=10:WindowsSecurityContextOptions runAsUser=4:i! runAsGroup=8:i! "
                       "runAsNonRoot=5:b! readOnlyRootFilesystem=6:b! allowPrivilegeEscalation=7:b! procMount=9! "
                       "seccompProfile=11:SeccompProfile appArmorProfile=12:AppArmorProfile",
    "PodSecurityContext": "seLinuxOptions=1:SELinuxOptions windowsOptions=8:WindowsSecurityContextOptions "
                          "runAsUser=2:i! runAsGroup=6:i! runAsNonRoot=3:b! supplementalGroups=4:*i "
                          "supplementalGroupsPolicy=12! fsGroup=5:i! sysctls=7:*Sysctl fsGroupChangePolicy=9! "
                          "seccompProfile=10:SeccompProfile appArmorProfile=11:AppArmorProfile "
                          "seLinuxChangePolicy=13!",
    "Capabilities": "add=1:*s drop=2:*s",
    "SELinuxOptions": "user=1 role=2 type=3 level=4",
    "WindowsSecurityContextOptions": "gmsaCredentialSpecName=1! gmsaCredentialSpec=2! runAsUserName=3! "
                                     "hostProcess=4:b!",
    "SeccompProfile": _SECURITY_PROFILE,
    "AppArmorProfile": _SECURITY_PROFILE,
    "Sysctl": "name=1! value=2!",
    "Affinity": "nodeAffinity=1:NodeAffinity podAffinity=2:PodAffinity podAntiAffinity=3:PodAntiAffinity",
    "NodeAffinity": "requiredDuringSchedulingIgnoredDuringExecution=1:NodeSelector "
                    "preferredDuringSchedulingIgnoredDuringExecution=2:*PreferredSchedulingTerm",
    "NodeSelector": "nodeSelectorTerms=1:*NodeSelectorTerm",
    "NodeSelectorTerm": "matchExpressions=1:*NodeSelectorRequirement matchFields=2:*NodeSelectorRequirement",
    "NodeSelectorRequirement": "key=1! operator=2! values=3:*s",
    "PreferredSchedulingTerm": "weight=1:i! preference=2:NodeSelectorTerm",
    "PodAffinity": _POD_AFFINITY,
    "PodAntiAffinity": _POD_AFFINITY,
    "PodAffinityTerm": "labelSelector=1:LabelSelector namespaces=2:*s topologyKey=3! "
                       "namespaceSelector=4:LabelSelector matchLabelKeys=5:*s mismatchLabelKeys=6:*s",
    "WeightedPodAffinityTerm": "weight=1:i! podAffinityTerm=2:PodAffinityTerm",
    "Toleration": "key=1 operator=2 value=3 effect=4 tolerationSeconds=5:i!",
    "HostAlias": "ip=1! hostnames=2:*s",
    "PodDNSConfig": "nameservers=1:*s searches=2:*s options=3:*PodDNSConfigOption",
    "PodDNSConfigOption": "name=1 value=2!",
    "PodReadinessGate": "conditionType=1!",
    "PodOS": "name=1!",
    "PodSchedulingGate": "name=1!",
    "PodResourceClaim": "name=1! resourceClaimName=3! resourceClaimTemplateName=4!",
    "TopologySpreadConstraint": "maxSkew=1:i! topologyKey=2! whenUnsatisfiable=3! labelSelector=4:LabelSelector "
                                "minDomains=5:i! nodeAffinityPolicy=6! nodeTaintsPolicy=7! matchLabelKeys=8:*s",
    "PodStatus": "phase=1 conditions=2:*PodCondition message=3 reason=4 nominatedNodeName=11 hostIP=5 "
                 "hostIPs=16:*HostIP podIP=6 podIPs=12:*PodIP startTime=7:t initContainerStatuses=10:*ContainerStatus "
                 "containerStatuses=8:*ContainerStatus qosClass=9 ephemeralContainerStatuses=13:*ContainerStatus "
                 "resize=14",
    "PodCondition": "type=1! status=2! lastProbeTime=3:t lastTransitionTime=4:t reason=5 message=6",
    "HostIP": "ip=1!",
    "PodIP": "ip=1!",
    "ContainerStatus": "name=1! state=2:ContainerState lastState=3:ContainerState ready=4:b! restartCount=5:i! "
                       "image=6! imageID=7! containerID=8 started=9:b! allocatedResources=10:{q} "
                       "resources=11:ResourceRequirements",
    "ContainerState": "waiting=1:ContainerStateWaiting running=2:ContainerStateRunning "
                      "terminated=3:ContainerStateTerminated",
    "ContainerStateWaiting": "reason=1 message=2",
    "ContainerStateRunning": "startedAt=1:t",
    "ContainerStateTerminated": "exitCode=1:i! signal=2:i reason=3 message=4 startedAt=5:t finishedAt=6:t "
                                "containerID=7",
    # Volumes: the common sources. Others (cloud disks, iscsi, rbd, cephfs...) are skipped as unknown fields.
    "Volume": "name=1! volumeSource=2:VolumeSource^",
    "VolumeSource": "hostPath=1:HostPathVolumeSource emptyDir=2:EmptyDirVolumeSource gitRepo=5:GitRepoVolumeSource "
                    "secret=6:SecretVolumeSource nfs=7:NFSVolumeSource "
                    "persistentVolumeClaim=10:PersistentVolumeClaimVolumeSource "
                    "downwardAPI=16:DownwardAPIVolumeSource configMap=19:ConfigMapVolumeSource "
                    "projected=26:ProjectedVolumeSource csi=28:CSIVolumeSource ephemeral=29:EphemeralVolumeSource "
                    "image=30:ImageVolumeSource",
    "HostPathVolumeSource": "path=1! type=2!",
    "EmptyDirVolumeSource": "medium=1 sizeLimit=2:q",
    "GitRepoVolumeSource": "repository=1! revision=2 directory=3",
    "SecretVolumeSource": "secretName=1 items=2:*KeyToPath defaultMode=3:i! optional=4:b!",
    "NFSVolumeSource": "server=1! path=2! readOnly=3:b",
    "PersistentVolumeClaimVolumeSource": "claimName=1! readOnly=2:b",
    "DownwardAPIVolumeSource": "items=1:*DownwardAPIVolumeFile defaultMode=2:i!",
    "DownwardAPIVolumeFile": "path=1! fieldRef=2:ObjectFieldSelector resourceFieldRef=3:ResourceFieldSelector "
                             "mode=4:i!",
    "ConfigMapVolumeSource": "localObjectReference=1:LocalObjectReference^ items=2:*KeyToPath defaultMode=3:i! "
                             "optional=4:b!",
    "KeyToPath": "key=1! path=2! mode=3:i!",
    "ProjectedVolumeSource": "sources=1:*VolumeProjection defaultMode=2:i!",
    "VolumeProjection": "secret=1:SecretProjection downwardAPI=2:DownwardAPIProjection "
                        "configMap=3:ConfigMapProjection serviceAccountToken=4:ServiceAccountTokenProjection "
                        "clusterTrustBundle=5:ClusterTrustBundleProjection",
    "SecretProjection": "localObjectReference=1:LocalObjectReference^ items=2:*KeyToPath optional=4:b!",
    "ConfigMapProjection": "localObjectReference=1:LocalObjectReference^ items=2:*KeyToPath optional=4:b!",
    "DownwardAPIProjection": "items=1:*DownwardAPIVolumeFile",
    "ServiceAccountTokenProjection": "audience=1 expirationSeconds=2:i! path=3!",
    "ClusterTrustBundleProjection": "name=1! signerName=2! labelSelector=3:LabelSelector optional=5:b! path=4!",
    "CSIVolumeSource": "driver=1! readOnly=2:b! fsType=3! volumeAttributes=4:{s} "
                       "nodePublishSecretRef=5:LocalObjectReference",
    "EphemeralVolumeSource": "volumeClaimTemplate=1:PersistentVolumeClaimTemplate",
    "ImageVolumeSource": "reference=1 pullPolicy=2",
    "PersistentVolumeClaimTemplate": "metadata=1:ObjectMeta spec=2:PersistentVolumeClaimSpec",
    "PersistentVolumeClaim": "metadata=1:ObjectMeta spec=2:PersistentVolumeClaimSpec "
                             "status=3:PersistentVolumeClaimStatus",
    "PersistentVolumeClaimSpec": "accessModes=1:*s selector=4:LabelSelector resources=2:VolumeResourceRequirements "
                                 "volumeName=3 storageClassName=5! volumeMode=6! "
                                 "dataSource=7:TypedLocalObjectReference dataSourceRef=8:TypedObjectReference "
                                 "volumeAttributesClassName=9!",
    "PersistentVolumeClaimStatus": "phase=1 accessModes=2:*s capacity=3:{q} "
                                   "conditions=4:*PersistentVolumeClaimCondition allocatedResources=5:{q} "
                                   "allocatedResourceStatuses=7:{s} currentVolumeAttributesClassName=8!",
    "PersistentVolumeClaimCondition": "type=1! status=2! lastProbeTime=3:t lastTransitionTime=4:t reason=5 "
                                      "message=6",
    "VolumeResourceRequirements": "limits=1:{q} requests=2:{q}",
    "TypedLocalObjectReference": "apiGroup=1! kind=2! name=3!",
    "TypedObjectReference": "apiGroup=1! kind=2! name=3! namespace=4!",
    # Other core kinds.
    "ReplicationController": "metadata=1:ObjectMeta spec=2:ReplicationControllerSpec "
                             "status=3:ReplicationControllerStatus",
    "ReplicationControllerSpec": "replicas=1:i! minReadySeconds=4:i selector=2:{s} template=3:PodTemplateSpec",
    "ReplicationControllerStatus": "replicas=1:i! fullyLabeledReplicas=2:i readyReplicas=4:i "
                                   "availableReplicas=5:i observedGeneration=3:i "
                                   "conditions=6:*ReplicationControllerCondition",
    "ReplicationControllerCondition": _TYPE_STATUS_TIME_REASON,
    "Service": "metadata=1:ObjectMeta spec=2:ServiceSpec status=3:ServiceStatus",
    "ServiceSpec": "ports=1:*ServicePort selector=2:{s} clusterIP=3 clusterIPs=18:*s type=4 externalIPs=5:*s "
                   "sessionAffinity=7 loadBalancerIP=8 loadBalancerSourceRanges=9:*s externalName=10 "
                   "externalTrafficPolicy=11 healthCheckNodePort=12:i publishNotReadyAddresses=13:b "
                   "sessionAffinityConfig=14:SessionAffinityConfig ipFamilies=19:*s ipFamilyPolicy=17! "
                   "allocateLoadBalancerNodePorts=20:b! loadBalancerClass=21! internalTrafficPolicy=22! "
                   "trafficDistribution=23!",
    "ServicePort": "name=1 protocol=2 appProtocol=6! port=3:i! targetPort=4:ios nodePort=5:i",
    "SessionAffinityConfig": "clientIP=1:ClientIPConfig",
    "ClientIPConfig": "timeoutSeconds=1:i!",
    "ServiceStatus": "loadBalancer=1:LoadBalancerStatus conditions=2:*Condition",
    "LoadBalancerStatus": "ingress=1:*LoadBalancerIngress",
    "LoadBalancerIngress": "ip=1 hostname=2 ipMode=3! ports=4:*PortStatus",
    "PortStatus": "port=1:i! protocol=2! error=3!",
    "ConfigMap": "metadata=1:ObjectMeta immutable=4:b! data=2:{s} binaryData=3:{y}",
    "Secret": "metadata=1:ObjectMeta immutable=5:b! data=2:{y} stringData=4:{s} type=3",
    "Namespace": "metadata=1:ObjectMeta spec=2:NamespaceSpec status=3:NamespaceStatus",
    "NamespaceSpec": "finalizers=1:*s",
    "NamespaceStatus": "phase=1 conditions=2:*NamespaceCondition",
    "NamespaceCondition": "type=1! status=2! lastTransitionTime=4:t reason=5 message=6",
    "ResourceQuota": "metadata=1:ObjectMeta spec=2:ResourceQuotaSpec status=3:ResourceQuotaStatus",
    "ResourceQuotaSpec": "hard=1:{q} scopes=2:*s scopeSelector=3:ScopeSelector",
    "ScopeSelector": "matchExpressions=1:*ScopedResourceSelectorRequirement",
    "ScopedResourceSelectorRequirement": "scopeName=1! operator=2! values=3:*s",
    "ResourceQuotaStatus": "hard=1:{q} used=2:{q}",
    "LimitRange": "metadata=1:ObjectMeta spec=2:LimitRangeSpec",
    "LimitRangeSpec": "limits=1:*LimitRangeItem",
    "LimitRangeItem": "type=1! max=2:{q} min=3:{q} default=4:{q} defaultRequest=5:{q} maxLimitRequestRatio=6:{q}",
    "ServiceAccount": "metadata=1:ObjectMeta secrets=2:*ObjectReference imagePullSecrets=3:*LocalObjectReference "
                      "automountServiceAccountToken=4:b!",
    "ObjectReference": "kind=1 namespace=2 name=3 uid=4 apiVersion=5 resourceVersion=6 fieldPath=7",
    "Binding": "metadata=1:ObjectMeta target=2:ObjectReference",
}

_APPS = {
    "Deployment": "metadata=1:ObjectMeta spec=2:DeploymentSpec status=3:DeploymentStatus",
    "DeploymentSpec": "replicas=1:i! selector=2:LabelSelector template=3:PodTemplateSpec "
                      "strategy=4:DeploymentStrategy minReadySeconds=5:i revisionHistoryLimit=6:i! paused=7:b "
                      "progressDeadlineSeconds=9:i!",
    "DeploymentStrategy": "type=1 rollingUpdate=2:RollingUpdateDeployment",
    "RollingUpdateDeployment": "maxUnavailable=1:ios maxSurge=2:ios",
    "DeploymentStatus": "observedGeneration=1:i replicas=2:i updatedReplicas=3:i readyReplicas=7:i "
                        "availableReplicas=4:i unavailableReplicas=5:i conditions=6:*DeploymentCondition "
                        "collisionCount=8:i!",
    "DeploymentCondition": "type=1! status=2! lastUpdateTime=6:t lastTransitionTime=7:t reason=4 message=5",
    "ReplicaSet": "metadata=1:ObjectMeta spec=2:ReplicaSetSpec status=3:ReplicaSetStatus",
    "ReplicaSetSpec": "replicas=1:i! minReadySeconds=4:i selector=2:LabelSelector template=3:PodTemplateSpec",
    "ReplicaSetStatus": "replicas=1:i! fullyLabeledReplicas=2:i readyReplicas=4:i availableReplicas=5:i "
                        "observedGeneration=3:i conditions=6:*ReplicaSetCondition",
    "ReplicaSetCondition": _TYPE_STATUS_TIME_REASON,
    "StatefulSet": "metadata=1:ObjectMeta spec=2:StatefulSetSpec status=3:StatefulSetStatus",
    "StatefulSetSpec": "replicas=1:i! selector=2:LabelSelector template=3:PodTemplateSpec "
                       "volumeClaimTemplates=4:*PersistentVolumeClaim serviceName=5! podManagementPolicy=6 "
                       "updateStrategy=7:StatefulSetUpdateStrategy revisionHistoryLimit=8:i! minReadySeconds=9:i "
                       "persistentVolumeClaimRetentionPolicy=10:StatefulSetPersistentVolumeClaimRetentionPolicy "
                       "ordinals=11:StatefulSetOrdinals",
    "StatefulSetUpdateStrategy": "type=1 rollingUpdate=2:RollingUpdateStatefulSetStrategy",
    "RollingUpdateStatefulSetStrategy": "partition=1:i! maxUnavailable=2:ios",
    "StatefulSetPersistentVolumeClaimRetentionPolicy": "whenDeleted=1 whenScaled=2",
    "StatefulSetOrdinals": "start=1:i!",
    "StatefulSetStatus": "observedGeneration=1:i replicas=2:i! readyReplicas=3:i currentReplicas=4:i "
                         "updatedReplicas=5:i currentRevision=6 updateRevision=7 collisionCount=9:i! "
                         "conditions=10:*StatefulSetCondition availableReplicas=11:i!",
    "StatefulSetCondition": _TYPE_STATUS_TIME_REASON,
    "DaemonSet": "metadata=1:ObjectMeta spec=2:DaemonSetSpec status=3:DaemonSetStatus",
    "DaemonSetSpec": "selector=1:LabelSelector template=2:PodTemplateSpec updateStrategy=3:DaemonSetUpdateStrategy "
                     "minReadySeconds=4:i revisionHistoryLimit=6:i!",
    "DaemonSetUpdateStrategy": "type=1 rollingUpdate=2:RollingUpdateDaemonSet",
    "RollingUpdateDaemonSet": "maxUnavailable=1:ios maxSurge=2:ios",
    "DaemonSetStatus": "currentNumberScheduled=1:i! numberMisscheduled=2:i! desiredNumberScheduled=3:i! "
                       "numberReady=4:i! observedGeneration=5:i updatedNumberScheduled=6:i numberAvailable=7:i "
                       "numberUnavailable=8:i collisionCount=9:i! conditions=10:*DaemonSetCondition",
    "DaemonSetCondition": _TYPE_STATUS_TIME_REASON,
    "ControllerRevision": "metadata=1:ObjectMeta data=2:raw revision=3:i!",
}

_BATCH = {
    "Job": "metadata=1:ObjectMeta spec=2:JobSpec status=3:JobStatus",
    "JobSpec": "parallelism=1:i! completions=2:i! activeDeadlineSeconds=3:i! podFailurePolicy=11:PodFailurePolicy "
               "successPolicy=16:SuccessPolicy backoffLimit=7:i! backoffLimitPerIndex=12:i! maxFailedIndexes=13:i! "
               "selector=4:LabelSelector manualSelector=5:b! template=6:PodTemplateSpec "
               "ttlSecondsAfterFinished=8:i! completionMode=9! suspend=10:b! podReplacementPolicy=14! managedBy=15!",
    "PodFailurePolicy": "rules=1:*PodFailurePolicyRule",
    "PodFailurePolicyRule": "action=1! onExitCodes=2:PodFailurePolicyOnExitCodesRequirement "
                            "onPodConditions=3:*PodFailurePolicyOnPodConditionsPattern",
    "PodFailurePolicyOnExitCodesRequirement": "containerName=1! operator=2! values=3:*i",
    "PodFailurePolicyOnPodConditionsPattern": "type=1! status=2!",
    "SuccessPolicy": "rules=1:*SuccessPolicyRule",
    "SuccessPolicyRule": "succeededIndexes=1! succeededCount=2:i!",
    "JobStatus": "conditions=1:*JobCondition startTime=2:t completionTime=3:t active=4:i succeeded=5:i failed=6:i "
                 "terminating=11:i! completedIndexes=7 failedIndexes=10! "
                 "uncountedTerminatedPods=8:UncountedTerminatedPods ready=9:i!",
    "JobCondition": "type=1! status=2! lastProbeTime=3:t lastTransitionTime=4:t reason=5 message=6",
    "UncountedTerminatedPods": "succeeded=1:*s failed=2:*s",
    "CronJob": "metadata=1:ObjectMeta spec=2:CronJobSpec status=3:CronJobStatus",
    "CronJobSpec": "schedule=1! timeZone=8! startingDeadlineSeconds=2:i! concurrencyPolicy=3 suspend=4:b! "
                   "jobTemplate=5:JobTemplateSpec successfulJobsHistoryLimit=6:i! failedJobsHistoryLimit=7:i!",
    "JobTemplateSpec": "metadata=1:ObjectMeta spec=2:JobSpec",
    "CronJobStatus": "active=1:*ObjectReference lastScheduleTime=4:t lastSuccessfulTime=5:t",
}

_HPA_CONDITION = "type=1! status=2! lastTransitionTime=3:t reason=4 message=5"

_AUTOSCALING_V1 = {
    "HorizontalPodAutoscaler": "metadata=1:ObjectMeta spec=2:HorizontalPodAutoscalerSpec "
                               "status=3:HorizontalPodAutoscalerStatus",
    "HorizontalPodAutoscalerSpec": "scaleTargetRef=1:CrossVersionObjectReference minReplicas=2:i! "
                                   "maxReplicas=3:i! targetCPUUtilizationPercentage=4:i!",
    "CrossVersionObjectReference": "kind=1! name=2! apiVersion=3",
    "HorizontalPodAutoscalerStatus": "observedGeneration=1:i! lastScaleTime=2:t currentReplicas=3:i! "
                                     "desiredReplicas=4:i! currentCPUUtilizationPercentage=5:i!",
    "Scale": "metadata=1:ObjectMeta spec=2:ScaleSpec status=3:ScaleStatus",
    "ScaleSpec": "replicas=1:i",
    "ScaleStatus": "replicas=1:i! selector=2",
}

_AUTOSCALING_V2 = {
    "HorizontalPodAutoscaler": "metadata=1:ObjectMeta spec=2:HorizontalPodAutoscalerSpec "
                               "status=3:HorizontalPodAutoscalerStatus",
    "HorizontalPodAutoscalerSpec": "scaleTargetRef=1:CrossVersionObjectReference minReplicas=2:i! "
                                   "maxReplicas=3:i! metrics=4:*MetricSpec behavior=5:HorizontalPodAutoscalerBehavior",
    "CrossVersionObjectReference": "kind=1! name=2! apiVersion=3",
    "MetricSpec": "type=1! object=2:ObjectMetricSource pods=3:PodsMetricSource resource=4:ResourceMetricSource "
                  "containerResource=7:ContainerResourceMetricSource external=5:ExternalMetricSource",
    "ObjectMetricSource": "describedObject=1:CrossVersionObjectReference target=2:MetricTarget "
                          "metric=3:MetricIdentifier",
    "PodsMetricSource": "metric=1:MetricIdentifier target=2:MetricTarget",
    "ResourceMetricSource": "name=1! target=2:MetricTarget",
    "ContainerResourceMetricSource": "name=1! target=2:MetricTarget container=3!",
    "ExternalMetricSource": "metric=1:MetricIdentifier target=2:MetricTarget",
    "MetricIdentifier": "name=1! selector=2:LabelSelector",
    "MetricTarget": "type=1! value=2:q averageValue=3:q averageUtilization=4:i!",
    "HorizontalPodAutoscalerBehavior": "scaleUp=1:HPAScalingRules scaleDown=2:HPAScalingRules",
    "HPAScalingRules": "stabilizationWindowSeconds=3:i! selectPolicy=1! policies=2:*HPAScalingPolicy",
    "HPAScalingPolicy": "type=1! value=2:i! periodSeconds=3:i!",
    "HorizontalPodAutoscalerStatus": "observedGeneration=1:i! lastScaleTime=2:t currentReplicas=3:i "
                                     "desiredReplicas=4:i! currentMetrics=5:*MetricStatus "
                                     "conditions=6:*HorizontalPodAutoscalerCondition",
    "HorizontalPodAutoscalerCondition": _HPA_CONDITION,
    "MetricStatus": "type=1! object=2:ObjectMetricStatus pods=3:PodsMetricStatus resource=4:ResourceMetricStatus "
                    "containerResource=7:ContainerResourceMetricStatus external=5:ExternalMetricStatus",
    "ObjectMetricStatus": "metric=1:MetricIdentifier current=2:MetricValueStatus "
                          "describedObject=3:CrossVersionObjectReference",
    "PodsMetricStatus": "metric=1:MetricIdentifier current=2:MetricValueStatus",
    "ResourceMetricStatus": "name=1! current=2:MetricValueStatus",
    "ContainerResourceMetricStatus": "name=1! current=2:MetricValueStatus container=3!",
    "ExternalMetricStatus": "metric=1:MetricIdentifier current=2:MetricValueStatus",
    "MetricValueStatus": "value=1:q averageValue=2:q averageUtilization=3:i!",
}

_NETWORKING = {
    "Ingress": "metadata=1:ObjectMeta spec=2:IngressSpec status=3:IngressStatus",
    "IngressSpec": "ingressClassName=4! defaultBackend=1:IngressBackend tls=2:*IngressTLS rules=3:*IngressRule",
    "IngressBackend": "service=4:IngressServiceBackend resource=3:TypedLocalObjectReference",
    "IngressServiceBackend": "name=1! port=2:ServiceBackendPort",
    "ServiceBackendPort": "name=1 number=2:i",
    "IngressTLS": "hosts=1:*s secretName=2",
    "IngressRule": "host=1 ingressRuleValue=2:IngressRuleValue^",
    "IngressRuleValue": "http=1:HTTPIngressRuleValue",
    "HTTPIngressRuleValue": "paths=1:*HTTPIngressPath",
    "HTTPIngressPath": "path=1 pathType=3! backend=2:IngressBackend",
    "IngressStatus": "loadBalancer=1:IngressLoadBalancerStatus",
    "IngressLoadBalancerStatus": "ingress=1:*IngressLoadBalancerIngress",
    "IngressLoadBalancerIngress": "ip=1 hostname=2 ports=4:*IngressPortStatus",
    "IngressPortStatus": "port=1:i! protocol=2! error=3!",
    "IngressClass": "metadata=1:ObjectMeta spec=2:IngressClassSpec",
    "IngressClassSpec": "controller=1 parameters=2:IngressClassParametersReference",
    "IngressClassParametersReference": "apiGroup=1! kind=2! name=3! scope=4! namespace=5!",
}

_RBAC = {
    "Role": "metadata=1:ObjectMeta rules=2:*PolicyRule",
    "ClusterRole": "metadata=1:ObjectMeta rules=2:*PolicyRule aggregationRule=3:AggregationRule",
    "PolicyRule": "verbs=1:*s apiGroups=2:*s resources=3:*s resourceNames=4:*s nonResourceURLs=5:*s",
    "AggregationRule": "clusterRoleSelectors=1:*LabelSelector",
    "RoleBinding": "metadata=1:ObjectMeta subjects=2:*Subject roleRef=3:RoleRef",
    "ClusterRoleBinding": "metadata=1:ObjectMeta subjects=2:*Subject roleRef=3:RoleRef",
    "Subject": "kind=1! apiGroup=2 name=3! namespace=4",
    "RoleRef": "apiGroup=1! kind=2! name=3!",
}

_POLICY = {
    "PodDisruptionBudget": "metadata=1:ObjectMeta spec=2:PodDisruptionBudgetSpec status=3:PodDisruptionBudgetStatus",
    "PodDisruptionBudgetSpec": "minAvailable=1:ios selector=2:LabelSelector maxUnavailable=3:ios "
                               "unhealthyPodEvictionPolicy=4!",
    "PodDisruptionBudgetStatus": "observedGeneration=1:i disruptedPods=2:{t} disruptionsAllowed=3:i! "
                                 "currentHealthy=4:i! desiredHealthy=5:i! expectedPods=6:i! conditions=7:*Condition",
    "Eviction": "metadata=1:ObjectMeta deleteOptions=2:DeleteOptions",
}

_SCHEDULING = {
    "PriorityClass": "metadata=1:ObjectMeta value=2:i! globalDefault=3:b description=4 preemptionPolicy=5!",
}

_CERTIFICATES = {
    "CertificateSigningRequest": "metadata=1:ObjectMeta spec=2:CertificateSigningRequestSpec "
                                 "status=3:CertificateSigningRequestStatus",
    "CertificateSigningRequestSpec": "request=1:y signerName=7! expirationSeconds=8:i! usages=5:*s username=2 uid=3 "
                                     "groups=4:*s extra=6:{sl}",
    "CertificateSigningRequestStatus": "conditions=1:*CertificateSigningRequestCondition certificate=2:y",
    "CertificateSigningRequestCondition": "type=1! status=6! reason=2 message=3 lastUpdateTime=4:t "
                                          "lastTransitionTime=5:t",
}

_COORDINATION = {
    "Lease": "metadata=1:ObjectMeta spec=2:LeaseSpec",
    "LeaseSpec": "holderIdentity=1! leaseDurationSeconds=2:i! acquireTime=3:mt renewTime=4:mt leaseTransitions=5:i! "
                 "strategy=6! preferredHolder=7!",
}

_AUTHENTICATION = {
    "TokenRequest": "metadata=1:ObjectMeta spec=2:TokenRequestSpec status=3:TokenRequestStatus",
    "TokenRequestSpec": "audiences=1:*s expirationSeconds=4:i! boundObjectRef=3:BoundObjectReference",
    "BoundObjectReference": "kind=1 apiVersion=2 name=3 uid=4",
    "TokenRequestStatus": "token=1! expirationTimestamp=2:t",
    "TokenReview": "metadata=1:ObjectMeta spec=2:TokenReviewSpec status=3:TokenReviewStatus",
    "TokenReviewSpec": "token=1 audiences=2:*s",
    "TokenReviewStatus": "authenticated=1:b user=2:UserInfo audiences=4:*s error=3",
    "SelfSubjectReview": "metadata=1:ObjectMeta status=2:SelfSubjectReviewStatus",
    "SelfSubjectReviewStatus": "userInfo=1:UserInfo",
    "UserInfo": "username=1 uid=2 groups=3:*s extra=4:{sl}",
}

_SAR_STATUS = "allowed=1:b! denied=4:b reason=2 evaluationError=3"

_AUTHORIZATION = {
    "SelfSubjectAccessReview": "metadata=1:ObjectMeta spec=2:SelfSubjectAccessReviewSpec "
                               "status=3:SubjectAccessReviewStatus",
    "SelfSubjectAccessReviewSpec": "resourceAttributes=1:ResourceAttributes "
                                   "nonResourceAttributes=2:NonResourceAttributes",
    "SubjectAccessReview": "metadata=1:ObjectMeta spec=2:SubjectAccessReviewSpec status=3:SubjectAccessReviewStatus",
    "LocalSubjectAccessReview": "metadata=1:ObjectMeta spec=2:SubjectAccessReviewSpec "
                                "status=3:SubjectAccessReviewStatus",
    "SubjectAccessReviewSpec": "resourceAttributes=1:ResourceAttributes nonResourceAttributes=2:NonResourceAttributes "
                               "user=3 groups=4:*s extra=5:{sl} uid=6",
    "ResourceAttributes": "namespace=1 verb=2 group=3 version=4 resource=5 subresource=6 name=7 "
                          "fieldSelector=8:FieldSelectorAttributes labelSelector=9:LabelSelectorAttributes",
    "FieldSelectorAttributes": "rawSelector=1 requirements=2:*FieldSelectorRequirement",
    "LabelSelectorAttributes": "rawSelector=1 requirements=2:*LabelSelectorRequirement",
    "NonResourceAttributes": "path=1 verb=2",
    "SubjectAccessReviewStatus": _SAR_STATUS,
    "SelfSubjectRulesReview": "metadata=1:ObjectMeta spec=2:SelfSubjectRulesReviewSpec "
                              "status=3:SubjectRulesReviewStatus",
    "SelfSubjectRulesReviewSpec": "namespace=1",
    "SubjectRulesReviewStatus": "resourceRules=1:*ResourceRule nonResourceRules=2:*NonResourceRule "
                                "incomplete=3:b! evaluationError=4",
    "ResourceRule": "verbs=1:*s apiGroups=2:*s resources=3:*s resourceNames=4:*s",
    "NonResourceRule": "verbs=1:*s nonResourceURLs=2:*s",
}

# package -> (its messages, the apiVersion whose kinds it serves, those kinds)
_PACKAGES: dict[str, tuple[dict[str, str], str, tuple[str, ...]]] = {
    "meta": (_META, "", ()),
    "core": (_CORE, "v1", ("Pod", "PodTemplate", "ReplicationController", "Service", "ConfigMap", "Secret",
                           "Namespace", "ResourceQuota", "LimitRange", "ServiceAccount", "PersistentVolumeClaim",
                           "Binding")),
    "apps": (_APPS, "apps/v1", ("Deployment", "ReplicaSet", "StatefulSet", "DaemonSet", "ControllerRevision")),
    "batch": (_BATCH, "batch/v1", ("Job", "CronJob")),
    "autoscaling.v1": (_AUTOSCALING_V1, "autoscaling/v1", ("HorizontalPodAutoscaler", "Scale")),
    "autoscaling.v2": (_AUTOSCALING_V2, "autoscaling/v2", ("HorizontalPodAutoscaler",)),
    "networking": (_NETWORKING, "networking.k8s.io/v1", ("Ingress", "IngressClass")),
    "rbac": (_RBAC, "rbac.authorization.k8s.io/v1", ("Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding")),
    "policy": (_POLICY, "policy/v1", ("PodDisruptionBudget", "Eviction")),
    "scheduling": (_SCHEDULING, "scheduling.k8s.io/v1", ("PriorityClass",)),
    "certificates": (_CERTIFICATES, "certificates.k8s.io/v1", ("CertificateSigningRequest",)),
    "coordination": (_COORDINATION, "coordination.k8s.io/v1", ("Lease",)),
    "authentication": (_AUTHENTICATION, "authentication.k8s.io/v1",
                       ("TokenRequest", "TokenReview", "SelfSubjectReview")),
    "authorization": (_AUTHORIZATION, "authorization.k8s.io/v1",
                      ("SelfSubjectAccessReview", "SelfSubjectRulesReview", "SubjectAccessReview",
                       "LocalSubjectAccessReview")),
}


# --------------------------------------------------------------------------------------------------------
# Compiling the tables.
# --------------------------------------------------------------------------------------------------------

@dataclasses.dataclass
class _Field:
    name: str                 # JSON name
    number: int
    type: str                 # a scalar/special code, or a message name before linking
    repeated: bool = False
    map: bool = False         # map<string, type>
    keep: bool = False        # keep zero values (Go pointer / non-omitempty)
    inline: bool = False      # merge the sub-message's fields into the parent
    message: _Message | None = None


@dataclasses.dataclass
class _Message:
    name: str                 # package.Name, for error messages and logs
    fields: dict[int, _Field]
    order: tuple[str, ...]    # output key order (inline fields expand in place)


_FIELD_RE = re.compile(r"(\w+)=(\d+)(?::(\*|\{)?([\w.]+)\}?)?([!^]*)$")


def _parse_fields(package: str, name: str, spec: str) -> list[_Field]:
    """`jsonName=number[:type][flags] ...` -> fields; see the notation above the tables."""
    fields = []
    for item in spec.split():
        m = _FIELD_RE.match(item)
        if not m:
            raise ValueError(f"bad field spec {item!r} in {package}.{name}")
        json_name, number, shape, type_, flags = m.groups()
        fields.append(_Field(json_name, int(number), type_ or "s", repeated=shape == "*", map=shape == "{",
                             keep="!" in flags, inline="^" in flags))
    return fields


def _compile() -> tuple[dict[str, _Message], dict[tuple[str, str], _Message]]:
    messages: dict[str, _Message] = {}
    for package, (table, _, _) in _PACKAGES.items():
        for name, spec in table.items():
            fields = _parse_fields(package, name, spec)
            numbers = [f.number for f in fields]
            if len(set(numbers)) != len(numbers):
                raise ValueError(f"duplicate field number in {package}.{name}")
            messages[f"{package}.{name}"] = _Message(f"{package}.{name}", {f.number: f for f in fields}, ())

    def resolve(package: str, type_: str) -> _Message:
        candidates = [type_] if "." in type_ else [f"{package}.{type_}", f"meta.{type_}", f"core.{type_}"]
        for candidate in candidates:
            if candidate in messages:
                return messages[candidate]
        raise ValueError(f"{package}: unknown message type {type_!r}")

    for qualified, message in messages.items():
        package = qualified.rsplit(".", 1)[0]
        for f in message.fields.values():
            if f.type in _VARINT_TYPES or f.type in _SPECIAL_TYPES:
                if f.inline:
                    raise ValueError(f"{qualified}.{f.name}: only messages can be inlined")
                continue
            f.message = resolve(package, f.type)

    def order(message: _Message, seen: tuple[str, ...] = ()) -> tuple[str, ...]:
        names: list[str] = []
        for f in message.fields.values():
            if f.inline:
                assert f.message is not None and f.message.name not in seen
                names.extend(order(f.message, seen + (message.name,)))
            else:
                names.append(f.name)
        return tuple(names)

    for message in messages.values():
        message.order = order(message)

    kinds: dict[tuple[str, str], _Message] = {}
    for package, (_, api_version, kind_names) in _PACKAGES.items():
        for kind in kind_names:
            kinds[(api_version, kind)] = messages[f"{package}.{kind}"]
    return messages, kinds


_MESSAGES, _KINDS = _compile()


def supported_kinds() -> list[tuple[str, str]]:
    """Every (apiVersion, kind) `decode` has a message table for."""
    return sorted(_KINDS)


# --------------------------------------------------------------------------------------------------------
# The wire format.
# --------------------------------------------------------------------------------------------------------

_WIRE_NAMES = {0: "varint", 1: "fixed64", 2: "length-delimited", 3: "start-group", 4: "end-group", 5: "fixed32"}


def _varint(data: bytes, pos: int, end: int, where: str) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        if pos >= end:
            raise BadRequest(f"protobuf body is truncated: a varint runs past the end of {where}")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise BadRequest(f"protobuf body is malformed: a varint longer than 10 bytes in {where}")


def _records(data: bytes, pos: int, end: int, where: str) -> Iterator[tuple[int, int, int, int]]:
    """(field number, wire type, value or start, end) for each field of the message in data[pos:end].

    For varint/fixed fields the third item is the value; for length-delimited ones it is the start offset.
    """
    while pos < end:
        key, pos = _varint(data, pos, end, where)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise BadRequest(f"protobuf body is malformed: field number 0 in {where}")
        if wire == 0:
            value, pos = _varint(data, pos, end, where)
            yield number, wire, value, pos
        elif wire == 2:
            length, pos = _varint(data, pos, end, where)
            if pos + length > end:
                raise BadRequest(f"protobuf body is truncated: field {number} of {where} claims {length} bytes, "
                                 f"{end - pos} remain")
            yield number, wire, pos, pos + length
            pos += length
        elif wire == 1 or wire == 5:
            size = 8 if wire == 1 else 4
            if pos + size > end:
                raise BadRequest(f"protobuf body is truncated: field {number} of {where} needs {size} bytes, "
                                 f"{end - pos} remain")
            yield number, wire, int.from_bytes(data[pos:pos + size], "little"), pos + size
            pos += size
        else:
            raise BadRequest(f"protobuf body is malformed: field {number} of {where} has unsupported wire type "
                             f"{wire} ({_WIRE_NAMES.get(wire, 'invalid')})")


def _signed(value: int) -> int:
    """Proto int32/int64 are two's complement in a 64-bit varint."""
    return value - (1 << 64) if value >= (1 << 63) else value


def _string(data: bytes, start: int, end: int) -> str:
    # Go strings may hold any bytes; its JSON encoder writes invalid UTF-8 as U+FFFD, and so do we.
    return data[start:end].decode("utf-8", "replace")


# --------------------------------------------------------------------------------------------------------
# Special Kubernetes messages whose JSON form is a string, number or free JSON.
# --------------------------------------------------------------------------------------------------------

_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
_GO_ZERO_TIME_SECONDS = -62135596800     # 0001-01-01T00:00:00Z, Go's zero time.Time


def _time(data: bytes, start: int, end: int, where: str, micro: bool) -> Any:
    seconds = nanos = 0
    for number, wire, value, _ in _records(data, start, end, where):
        if number == 1 and wire == 0:
            seconds = _signed(value)
        elif number == 2 and wire == 0:
            nanos = _signed(value)
    if start == end or (seconds == _GO_ZERO_TIME_SECONDS and nanos == 0):
        return _ABSENT       # Go's zero time: JSON null
    try:
        t = _EPOCH + datetime.timedelta(seconds=seconds, microseconds=nanos // 1000)
    except OverflowError:
        raise BadRequest(f"protobuf body is malformed: time {seconds}s out of range in {where}") from None
    text = f"{t.year:04d}-{t.month:02d}-{t.day:02d}T{t.hour:02d}:{t.minute:02d}:{t.second:02d}"
    return f"{text}.{t.microsecond:06d}Z" if micro else f"{text}Z"


def _int_or_string(data: bytes, start: int, end: int, where: str) -> int | str:
    kind = int_val = 0
    str_val = ""
    for number, wire, value, stop in _records(data, start, end, where):
        if number == 1 and wire == 0:
            kind = _signed(value)
        elif number == 2 and wire == 0:
            int_val = _signed(value)
        elif number == 3 and wire == 2:
            str_val = _string(data, value, stop)
    return str_val if kind == 1 else int_val


def _first_bytes(data: bytes, start: int, end: int, where: str) -> bytes | None:
    """Field 1 (bytes) of a one-field message (Quantity, FieldsV1, RawExtension)."""
    found = None
    for number, wire, value, stop in _records(data, start, end, where):
        if number == 1 and wire == 2:
            found = data[value:stop]
    return found


def _json(raw: bytes, where: str) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise BadRequest(f"protobuf body is malformed: {where} does not hold valid JSON: {e}") from None


def _special(type_: str, data: bytes, start: int, end: int, where: str) -> Any:
    if type_ == "q":
        raw = _first_bytes(data, start, end, where)
        return "0" if raw is None else raw.decode("utf-8", "replace")
    if type_ == "ios":
        return _int_or_string(data, start, end, where)
    if type_ == "t" or type_ == "mt":
        return _time(data, start, end, where, micro=type_ == "mt")
    if type_ == "f1":
        raw = _first_bytes(data, start, end, where)
        return _ABSENT if not raw else _json(raw, where)
    if type_ == "raw":
        raw = _first_bytes(data, start, end, where)
        if not raw:
            return _ABSENT
        return decode(raw) if raw.startswith(MAGIC) else _json(raw, where)
    if type_ == "sl":
        return [_string(data, value, stop) for number, wire, value, stop in _records(data, start, end, where)
                if number == 1 and wire == 2]
    raise AssertionError(type_)


# --------------------------------------------------------------------------------------------------------
# Messages.
# --------------------------------------------------------------------------------------------------------

# Zero values omitempty drops (unless a field is marked `!`).
_OMITTED_ZEROS: dict[str, Any] = {"s": "", "y": "", "i": 0, "b": False, "d": 0.0}
# What a map value missing from its entry stands for.
_MISSING_MAP_VALUES: dict[str, Any] = {**_OMITTED_ZEROS, "q": "0", "ios": 0}


def _scalar(f: _Field, wire: int, value: int, stop: int, data: bytes, where: str) -> Any:
    """One non-repeated value of f's (scalar or special) type from its record."""
    type_ = f.type
    if type_ == "i" or type_ == "b":
        if wire != 0:
            raise _wrong_wire(f, wire, where)
        return _signed(value) if type_ == "i" else value != 0
    if type_ == "d":
        if wire != 1:
            raise _wrong_wire(f, wire, where)
        return struct.unpack("<d", value.to_bytes(8, "little"))[0]
    if wire != 2:
        raise _wrong_wire(f, wire, where)
    if type_ == "s":
        return _string(data, value, stop)
    if type_ == "y":
        return base64.b64encode(data[value:stop]).decode("ascii")
    return _special(type_, data, value, stop, f"{where}.{f.name}")


def _wrong_wire(f: _Field, wire: int, where: str) -> BadRequest:
    return BadRequest(f"protobuf body is malformed: {where}.{f.name} (field {f.number}) has wire type "
                      f"{wire} ({_WIRE_NAMES.get(wire, 'invalid')}), which does not fit its type")


def _value(f: _Field, wire: int, value: int, stop: int, data: bytes, where: str) -> Any:
    if f.message is not None:
        if wire != 2:
            raise _wrong_wire(f, wire, where)
        return _message(f.message, data, value, stop, f"{where}.{f.name}")
    return _scalar(f, wire, value, stop, data, where)


def _map_entry(f: _Field, data: bytes, start: int, end: int, where: str) -> tuple[str, Any]:
    key = ""
    val: Any = _ABSENT
    for number, wire, value, stop in _records(data, start, end, f"{where}.{f.name}"):
        if number == 1:
            if wire != 2:
                raise BadRequest(f"protobuf body is malformed: a key of map {where}.{f.name} is not a string")
            key = _string(data, value, stop)
        elif number == 2:
            val = _value(f, wire, value, stop, data, where)
    if val is _ABSENT:
        val = {} if f.message is not None else [] if f.type == "sl" else _MISSING_MAP_VALUES.get(f.type)
    return key, val


def _message(message: _Message, data: bytes, start: int, end: int, where: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for number, wire, value, stop in _records(data, start, end, where):
        f = message.fields.get(number)
        if f is None:
            log.debug("protobuf: skipping unknown field %d (%s) of %s at %s", number,
                      _WIRE_NAMES.get(wire, wire), message.name, where)
            continue
        if f.map:
            if wire != 2:
                raise _wrong_wire(f, wire, where)
            key, val = _map_entry(f, data, value, stop, where)
            out.setdefault(f.name, {})[key] = None if val is _ABSENT else val
        elif f.repeated:
            items = out.setdefault(f.name, [])
            if wire == 2 and f.type in ("i", "b", "d"):     # packed
                p = value
                while p < stop:
                    if f.type == "d":
                        if p + 8 > stop:
                            raise BadRequest(f"protobuf body is truncated: packed {where}.{f.name}")
                        items.append(struct.unpack("<d", data[p:p + 8])[0])
                        p += 8
                    else:
                        v, p = _varint(data, p, stop, f"{where}.{f.name}")
                        items.append(_signed(v) if f.type == "i" else v != 0)
            else:
                item = _value(f, wire, value, stop, data, where)
                if item is not _ABSENT:
                    items.append(item)
        else:
            item = _value(f, wire, value, stop, data, where)
            if item is _ABSENT:
                out.pop(f.name, None)
            elif f.inline:
                out.update(item)
            elif f.message is not None and isinstance(out.get(f.name), dict):
                out[f.name].update(item)     # proto merges a repeated singular message field
            else:
                out[f.name] = item
    # omitempty: drop zero scalars (unless kept), empty lists and maps; then put keys in Go struct order.
    for f in message.fields.values():
        if f.name not in out or f.inline:
            continue
        v = out[f.name]
        if f.repeated or f.map:
            if not v:
                del out[f.name]
        elif not f.keep and f.type in _OMITTED_ZEROS and v == _OMITTED_ZEROS[f.type]:
            del out[f.name]
    if len(out) > 1:
        out = {k: out[k] for k in message.order if k in out}
    return out


# --------------------------------------------------------------------------------------------------------
# The envelope.
# --------------------------------------------------------------------------------------------------------

def decode(body: bytes) -> dict[str, Any]:
    """Decode a protobuf-enveloped Kubernetes object to the same dict its JSON form would give (apiVersion,
    kind, metadata, spec...).

    Raises kates.api.errors.BadRequest (message naming what is wrong) for a bad envelope/truncated message, and
    kates.api.errors.UnsupportedMediaType for a kind this decoder has no message table for.
    """
    data = bytes(body)
    if not data.startswith(MAGIC):
        raise BadRequest(f"protobuf body does not start with the Kubernetes magic prefix 'k8s\\x00' "
                         f"(got {data[:4]!r}); send {CONTENT_TYPE} bodies as runtime.Unknown envelopes")
    api_version = kind = content_encoding = content_type = ""
    raw: tuple[int, int] | None = None
    where = "the runtime.Unknown envelope"
    for number, wire, value, stop in _records(data, len(MAGIC), len(data), where):
        if number == 1 and wire == 2:
            for n, w, v, s in _records(data, value, stop, "the envelope's typeMeta"):
                if n == 1 and w == 2:
                    api_version = _string(data, v, s)
                elif n == 2 and w == 2:
                    kind = _string(data, v, s)
        elif number == 2 and wire == 2:
            raw = (value, stop)
        elif number == 3 and wire == 2:
            content_encoding = _string(data, value, stop)
        elif number == 4 and wire == 2:
            content_type = _string(data, value, stop)
        else:
            log.debug("protobuf: skipping unknown field %d of %s", number, where)
    if not kind or not api_version:
        raise BadRequest("protobuf envelope has no " + ("kind" if not kind else "apiVersion") +
                         " in its typeMeta")
    if content_encoding:
        raise UnsupportedMediaType(f"protobuf envelope for {api_version} {kind} has content encoding "
                                   f"{content_encoding!r}; only unencoded objects are supported")
    start, end = raw if raw is not None else (0, 0)
    media = content_type.split(";")[0].strip().lower()
    if media == "application/json" and raw is not None:
        obj = _json(data[start:end], f"the envelope's raw {kind}")
        if not isinstance(obj, dict):
            raise BadRequest(f"the envelope's raw {kind} is not a JSON object")
        return {"apiVersion": api_version, "kind": kind, **{k: v for k, v in obj.items()
                                                            if k not in ("apiVersion", "kind")}}
    if media not in ("", CONTENT_TYPE):
        raise UnsupportedMediaType(f"protobuf envelope for {api_version} {kind} holds {content_type!r}")
    message = _KINDS.get((api_version, kind))
    if message is None:
        raise UnsupportedMediaType(
            f"cannot decode {api_version} {kind} from {CONTENT_TYPE}: no protobuf message table for it; "
            f"send it as application/json")
    try:
        obj = _message(message, data, start, end, kind)
    except RecursionError:      # only reachable through runtime.RawExtensions nested in each other
        raise BadRequest(f"protobuf body is malformed: {kind} nests objects too deeply") from None
    return {"apiVersion": api_version, "kind": kind, **obj}
