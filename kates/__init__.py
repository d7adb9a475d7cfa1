"""kates: Kubernetes in Python, served to the real kubectl."""

__version__ = "0.1.0"
KUBERNETES_VERSION = "v1.32.0"
