"""HER2Net's selectable parts and thresholds, importable without torch (for the CLI and GUI)."""

SEGMENTERS = ("unet", "segnet", "deeplabv3plus")
CLASSIFIERS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "densenet121")
DEFAULT_SEGMENTER = "unet"
DEFAULT_CLASSIFIER = "resnet50"
#: Integrated classifiers over the five sub-classifier outputs (seed's comparison).
KINDS = ("rf", "lr", "dt", "svm", "adaboost", "gbdt", "soft_voting")
DEFAULT_KIND = "rf"
#: Sub-classifiers, folds and integrated-classifier inputs.
N_INPUTS = 5
#: A tile with at most this fraction of tumor pixels is not classified (non-tumor filter).
TUMOR_MIN_FRACTION = 0.10
#: HER2 positive when P, the high-expression percentage of the tumor, is at least this.
POSITIVE_PERCENT = 10.0
