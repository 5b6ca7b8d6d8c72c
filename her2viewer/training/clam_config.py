"""CLAM training hyper-parameters (seed 000's recipe); importable without torch."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ClamTrainConfig:
    """Hyper-parameters of one CLAM training run (seed 000 defaults)."""

    model_type: str = "clam_sb"
    size: str = "small"
    gated: bool = True
    dropout: float = 0.25
    lr: float = 1e-4
    weight_decay: float = 1e-5
    bag_loss: str = "svm"
    inst_loss: str = "ce"
    bag_weight: float = 0.7
    k_sample: int = 8
    subtyping: bool = False
    standardize: bool = False
    max_epochs: int = 200
    patience: int = 20
    min_epochs: int = 50
    seed: int = 0

    def clam_config(self, n_classes: int, embed_dim: int):
        """The model architecture (a :class:`~her2viewer.models.clam.ClamConfig`)."""
        from her2viewer.models.clam import ClamConfig  # torch only when a model is built

        return ClamConfig.from_size(
            self.size,
            model_type=self.model_type,
            n_classes=n_classes,
            embed_dim=embed_dim,
            gated=self.gated,
            dropout=self.dropout,
            k_sample=self.k_sample,
            subtyping=self.subtyping,
            standardize=self.standardize,
        )
