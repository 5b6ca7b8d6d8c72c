"""HER2Net's selectable parts, importable without torch or scikit-learn (for the CLI)."""

SEGMENTERS = ("unet", "segnet", "deeplabv3plus")
CLASSIFIERS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "densenet121")
DEFAULT_SEGMENTER = "unet"
DEFAULT_CLASSIFIER = "resnet50"
#: Integrated classifiers over the five sub-classifier outputs (seed's comparison).
KINDS = ("rf", "lr", "dt", "svm", "adaboost", "gbdt", "soft_voting")
DEFAULT_KIND = "rf"
#: Sub-classifiers, folds and integrated-classifier inputs.
N_INPUTS = 5
