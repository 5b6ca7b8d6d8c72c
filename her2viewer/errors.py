"""The project's own exceptions.

Every error a user can cause (a bad file, a missing weight file, a wrong
checkpoint) is raised as a subclass of :class:`Her2ViewerError` whose message
is one sentence a pathologist can act on. The CLI prints it on one line and
exits with status 2; the GUI shows it in a message box and keeps running.
"""


class Her2ViewerError(Exception):
    """Base class for errors caused by user input, with a one-line message."""

    def __str__(self) -> str:
        text = super().__str__()
        return " ".join(text.split())


class SlideError(Her2ViewerError):
    """A slide or image cannot be opened or read."""


class TissueError(Her2ViewerError):
    """Tissue segmentation or patching cannot run with the given input."""


class ModelError(Her2ViewerError):
    """A model, encoder, checkpoint, bundle or features file cannot be used as asked."""


class StainError(Her2ViewerError):
    """Stain separation or IHC measurement cannot run with the given input."""


class RegistrationError(Her2ViewerError):
    """Two slides cannot be registered, or a registration file is unusable."""


class RadiomicsError(Her2ViewerError):
    """A CT/MR volume, ROI mask or radiomics feature table cannot be used as asked."""


class StudyError(Her2ViewerError):
    """A reader study cannot be created, read, imported or reported with the given input."""


class EvaluationError(Her2ViewerError):
    """Predictions cannot be evaluated as given (missing columns, unknown labels)."""


class OutputError(Her2ViewerError):
    """An output file or folder cannot be written (full disk, no permission, a folder)."""
