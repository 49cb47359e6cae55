"""Backbones: the registry of networks, the weights they start from, and the built
networks (free input size, VGG's fc layers as convolutions).

* :mod:`~cnnfeatures.backbones.registry`: :class:`BackboneSpec` and :data:`BACKBONES`;
* :mod:`~cnnfeatures.backbones.weights`: ImageNet, file or random weights, their identity,
  checks of a file against an architecture, pretrained values read once per process;
* :mod:`~cnnfeatures.backbones.network`: :class:`FeatureNetwork` and
  :func:`get_feature_network`, which builds each network once per process (a bounded
  memo, see :mod:`cnnfeatures.memo`).
"""

from .network import (
    MAX_NETWORKS,
    PRECISIONS,
    FeatureNetwork,
    check_layer_names,
    clear_networks,
    get_feature_network,
    precision_policy,
    reader_model,
)
from .registry import (
    BACKBONES,
    BackboneSpec,
    get_backbone,
    register_backbone,
    unregister_backbone,
)
from .weights import (
    MAX_PRETRAINED,
    WeightsUnavailableError,
    check_fc_weights,
    check_weights_file,
    check_weights_format,
    find_imagenet_weights,
    imagenet_weights_dirs,
    load_pretrained_weights,
    network_fingerprint,
    weights_fingerprint,
    weights_have_top,
)

__all__ = [
    "BACKBONES",
    "MAX_NETWORKS",
    "MAX_PRETRAINED",
    "PRECISIONS",
    "BackboneSpec",
    "FeatureNetwork",
    "WeightsUnavailableError",
    "check_layer_names",
    "check_weights_file",
    "check_weights_format",
    "clear_networks",
    "find_imagenet_weights",
    "get_backbone",
    "get_feature_network",
    "imagenet_weights_dirs",
    "load_pretrained_weights",
    "network_fingerprint",
    "precision_policy",
    "reader_model",
    "register_backbone",
    "unregister_backbone",
    "check_fc_weights",
    "weights_fingerprint",
    "weights_have_top",
]
