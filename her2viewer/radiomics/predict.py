"""HER2 prediction for one volume + ROI with a saved radiomics model (GUI and CLI share it)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from her2viewer.radiomics.features import RadiomicsSettings, extract_features
from her2viewer.radiomics.model import load_models, predict_saved
from her2viewer.radiomics.params import settings_for_features
from her2viewer.radiomics.volume import Volume


@dataclass(frozen=True)
class Prediction:
    """One case's prediction.

    Attributes
    ----------
    classifier : str
        Which of the model file's classifiers was used.
    label : str
        The predicted class (the second class when its probability is >= 0.5).
    probability : float
        Probability of the model's second class (e.g. ``positive``).
    classes : tuple of str
        The model's two classes.
    """

    classifier: str
    label: str
    probability: float
    classes: tuple[str, str]

    def as_dict(self) -> dict:
        """JSON-ready: classifier, class and ``p_<second class>``."""
        return {
            "classifier": self.classifier,
            "class": self.label,
            f"p_{self.classes[1]}": self.probability,
        }


def predict_case(
    model: str | Path | dict,
    image: Volume,
    mask: Volume,
    classifier: str = "logistic_regression",
    settings: RadiomicsSettings | None = None,
    context=None,
) -> Prediction:
    """Extract the model's features from ``image`` inside ``mask`` and classify them.

    Parameters
    ----------
    model : str, Path or dict
        A model JSON written by ``radiomics train``, or its loaded content.
    image, mask : Volume
        The volume and its ROI.
    classifier : str
        ``logistic_regression``, ``random_forest`` or ``mlp``.
    settings : RadiomicsSettings, optional
        Extraction settings; by default read from the model's feature names
        (:func:`~her2viewer.radiomics.params.settings_for_features`), so only what the
        model needs is computed.
    context : JobContext, optional
        Progress and cancellation when run as a background job.

    Raises
    ------
    RadiomicsError
        For an unreadable model, an unknown classifier or unusable inputs.
    """
    payload = model if isinstance(model, dict) else load_models(model)
    settings = settings or settings_for_features(payload["features"])
    features = extract_features(image, mask, settings, context)
    probability = float(predict_saved(payload, features, classifier)[0])
    classes = tuple(payload["classes"])
    return Prediction(classifier, classes[int(probability >= 0.5)], probability, classes)
