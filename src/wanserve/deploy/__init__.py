"""wanserve on Kubernetes as a whole service (`wanserve k8s render --deploy`), and the YAML files
shipped beside this module (the PyTorchJob and TrainJob templates, the dispatcher's RBAC)."""

from wanserve.deploy.options import DeployOptions, SecretKeyRef, load_options
from wanserve.deploy.render import render_service, service_yaml

__all__ = ["DeployOptions", "SecretKeyRef", "load_options", "render_service", "service_yaml"]
