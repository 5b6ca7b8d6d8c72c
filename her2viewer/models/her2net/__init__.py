"""HER2Net (seed 002): tumor detector, five fold tile classifiers, integrated classifier.

The method of Liao Y. et al., "Artificial Intelligence for Predicting HER2 Status of Gastric
Cancer Based on Whole-Slide Histopathology Images: A Retrospective Multicenter Study".
Modules: :mod:`~.choices` (parts and thresholds, torch-free), :mod:`~.networks` (segmenters,
tile classifiers), :mod:`~.ensemble` (integrated classifier), :mod:`~.model` (bundles,
:func:`~.model.load_her2net`), :mod:`~.predict` (one slide's prediction as plain data),
:mod:`~.data` and :mod:`~.training` (cohort tiles, labels, resumable training),
:mod:`~.evaluation`, :mod:`~.demo_bundle`; the slide analysis (overlay layers, result files,
cache) is :mod:`her2viewer.analysis.her2net`. Nothing is imported here, so the command line
starts without torch.

>>> from her2viewer.models.her2net.model import load_her2net
>>> from her2viewer.analysis.her2net import predict_slide
>>> result = predict_slide(slide, load_her2net())  # doctest: +SKIP
"""
