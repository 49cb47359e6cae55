"""What a meta-estimator shares with the ``estimator`` it wraps: the inputs it takes and the
metadata (``sample_weight``, ``groups``...) its ``fit`` hands on.

:class:`~cnnfeatures.LabelShiftAdapter`, :class:`~cnnfeatures.TestTimeAugmentationClassifier`
and :class:`~cnnfeatures.SeedEnsembleClassifier` wrap one estimator each. They take what it
takes (images or a feature matrix: its input tags), and they route metadata the way
scikit-learn's own meta-estimators do: with ``sklearn.set_config(enable_metadata_routing=True)``
a parameter of ``fit`` reaches the steps that requested it (``set_fit_request``) through any
depth of pipelines, votes and tuners, and one passed without any request is an error naming
it; without routing, every parameter goes to the wrapped estimator's ``fit`` as given.

Routing matters for class weights under calibration:
``CalibratedClassifierCV(LinearSVC(class_weight="balanced"))`` weights the classes in the
SVM and fits its sigmoid on unweighted folds, which undoes the weighting; a
``sample_weight`` routed to the ``CalibratedClassifierCV`` weights both (docs/shift.md).
"""

from __future__ import annotations

from sklearn import get_config
from sklearn.utils.metadata_routing import MetadataRouter, MethodMapping, process_routing


def routing_enabled() -> bool:
    """Whether scikit-learn's metadata routing is on
    (``sklearn.set_config(enable_metadata_routing=True)`` or its ``config_context``)."""
    return bool(get_config().get("enable_metadata_routing", False))


def wrapped_input_tags(tags, estimator):
    """``tags`` of a meta-estimator with the input tags of the ``estimator`` it wraps (it
    takes what that one takes: images, or a feature matrix); unchanged when ``estimator``
    has no tags, so that ``fit`` names a bad one."""
    if hasattr(estimator, "__sklearn_tags__"):
        tags.input_tags = estimator.__sklearn_tags__().input_tags
    return tags


def wrapped_estimator_router(owner) -> MetadataRouter:
    """The metadata routing of a meta-estimator whose ``fit`` fits ``owner.estimator``:
    ``fit``'s parameters go to the estimator's ``fit``; the owner's own requests (its
    ``score``'s ``sample_weight``, set with ``owner.set_score_request``) stay its own.

    Parameters
    ----------
    owner : estimator with an ``estimator`` parameter

    Returns
    -------
    router : sklearn.utils.metadata_routing.MetadataRouter

    Examples
    --------
    >>> import sklearn
    >>> from sklearn.linear_model import LogisticRegression
    >>> from cnnfeatures import SeedEnsembleClassifier
    >>> with sklearn.config_context(enable_metadata_routing=True):
    ...     head = LogisticRegression().set_fit_request(sample_weight=True)
    ...     router = wrapped_estimator_router(SeedEnsembleClassifier(head))
    >>> sorted(router.consumes("fit", {"sample_weight", "groups"}))
    ['sample_weight']
    """
    return (MetadataRouter(owner=type(owner).__name__)  # a name: scikit-learn 1.6 wants one
            .add_self_request(owner)
            .add(estimator=owner.estimator,
                 method_mapping=MethodMapping().add(caller="fit", callee="fit")))


def fit_params_for_estimator(owner, params: dict) -> dict:
    """The parameters of ``owner.fit`` that go on to ``owner.estimator.fit``.

    With metadata routing enabled, those the wrapped estimator (or a step inside it)
    requested, under the names it asked for (aliases resolved); one that no step
    requested, or that every step declined (``set_fit_request(sample_weight=False)``), is
    scikit-learn's error naming it. Without routing, every one of ``params`` as given
    (scikit-learn's older convention, which ``Pipeline`` keeps too).

    Examples
    --------
    >>> import sklearn
    >>> from sklearn.linear_model import LogisticRegression
    >>> from cnnfeatures import SeedEnsembleClassifier
    >>> params = {"sample_weight": [1.0, 2.0], "validation_data": None}
    >>> sorted(fit_params_for_estimator(SeedEnsembleClassifier(LogisticRegression()), params))
    ['sample_weight', 'validation_data']
    >>> with sklearn.config_context(enable_metadata_routing=True):
    ...     head = LogisticRegression().set_fit_request(sample_weight=True)
    ...     sorted(fit_params_for_estimator(SeedEnsembleClassifier(head),
    ...                                     {"sample_weight": [1.0, 2.0]}))
    ['sample_weight']
    """
    if not routing_enabled():
        return params
    return dict(process_routing(owner, "fit", **params).estimator.fit)
