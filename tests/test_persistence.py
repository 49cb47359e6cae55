"""Every kind of fitted pipeline survives joblib.dump -> load in a fresh process."""

import numpy as np
import pytest
from imblearn.pipeline import make_pipeline as make_imb_pipeline
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline, make_union

from cnnfeatures import CLAHETransformer, CNNFeatureExtractor, ImageAugmenter, VLADEncoder
from tests.conftest import proba_in_fresh_process


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """Random VGG-16 weights in a file: the same network in every process."""
    import keras

    keras.utils.set_random_seed(0)
    path = tmp_path_factory.mktemp("w") / "vgg16.weights.h5"
    keras.applications.VGG16(include_top=False, weights=None).save_weights(path)
    return str(path)


def pipelines(weights):
    def ext(**kw):
        return CNNFeatureExtractor(backbone="vgg16", weights=weights, **kw)

    return {
        "clahe+union": make_pipeline(
            make_union(ext(layer="block5_pool"),
                       make_pipeline(CLAHETransformer(), ext(layer="block4_pool"))),
            LogisticRegression()),
        "vlad": make_pipeline(ext(layer="block5_pool", pooling=None),
                              VLADEncoder(k=4, pca_components=8, random_state=0),
                              LogisticRegression()),
        "augmenter": make_imb_pipeline(ImageAugmenter(random_state=0),
                                       ext(layer="block5_pool", pooling="mean"),
                                       LogisticRegression()),
    }


@pytest.mark.parametrize("name", ["clahe+union", "vlad", "augmenter"])
def test_fresh_process_gives_identical_outputs(name, weights, tmp_path):
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, (6, 40, 40, 3), dtype=np.uint8)
    y = np.array([0, 1] * 3)
    model = pipelines(weights)[name].fit(X, y)
    restored = proba_in_fresh_process(model, X, tmp_path)
    # Equal to float32 rounding: VLAD's float32 PCA/assignment products may sum in another
    # order in another process (BLAS threading); everything else is bit-identical.
    np.testing.assert_allclose(restored, model.predict_proba(X),
                               rtol=1e-5 if name == "vlad" else 0)
