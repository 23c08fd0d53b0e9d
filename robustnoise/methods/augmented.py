"""Training on an augmentation pipeline, in the order of AdA's App. A ("Combining data augmentation methods"):

1. DeepAugment: the pre-generated folder as an extra source (``data=deepaugment``, as the paper and Hendrycks et al.),
   or on the fly here: a fraction ``deepaugment.p`` of every batch through an EDSR with distorted weights (this runs
   after step 2, on the device: both are per-image maps, only the order of a crop and a corruption differs);
2. standard augmentation (the DataModule's train transform: pad + crop + flip for CIFAR-10);
3. the adversarial stage (identity here; AdA in ``robustnoise.methods.ada``), images ``[0, num_clean)`` skip it;
4. AugMix last (torchvision, ``all_ops=False``), optionally with the Jensen-Shannon consistency loss: the classifier
   sees (x, augmix(x), augmix(x)) in one forward, cross-entropy on the first view plus ``jsd_lambda`` times the JSD.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from robustnoise.augment.augmix import BatchAugMix, jsd_consistency
from robustnoise.augment.deepaugment import DeepAugmentEDSR
from robustnoise.methods.base import RobustClassifierModule
from robustnoise.models.edsr import build_corruption_network
from robustnoise.utils.errors import ConfigError
from robustnoise.utils.seeding import derive_seed, run_seed

AUGMIX_KEYS = ("enabled", "severity", "mixture_width", "chain_depth", "alpha", "all_ops", "jsd", "jsd_lambda")
DEEPAUGMENT_KEYS = ("enabled", "p", "p_resample", "corruption_net")


class AugmentedTraining(RobustClassifierModule):
    """A classifier trained on the DeepAugment -> (adversarial stage) -> AugMix pipeline (conf/method/augmix.yaml)."""

    def __init__(self, *, augmix: dict[str, Any], deepaugment: dict[str, Any], **kwargs: Any) -> None:
        for name, node, keys in (("augmix", augmix, AUGMIX_KEYS), ("deepaugment", deepaugment, DEEPAUGMENT_KEYS)):
            missing, unknown = set(keys) - set(node), set(node) - set(keys)
            if missing or unknown:
                raise ConfigError(f"method.{name}: missing key(s) {sorted(missing)}, unknown key(s) {sorted(unknown)}")
        if not 0.0 <= deepaugment["p"] <= 1.0:
            raise ConfigError(f"deepaugment.p must lie in [0, 1], got {deepaugment['p']}")
        super().__init__(**kwargs)
        keys = ("severity", "mixture_width", "chain_depth", "alpha", "all_ops")
        self.augmix = BatchAugMix(**{k: augmix[k] for k in keys}) if augmix["enabled"] else None
        self.deepaugment = None
        if deepaugment["enabled"]:
            if not deepaugment["corruption_net"]:
                raise ConfigError("deepaugment.enabled needs deepaugment.corruption_net (an EDSR config)")
            network = build_corruption_network(dict(deepaugment["corruption_net"]))
            self.deepaugment = DeepAugmentEDSR(network, p_resample=deepaugment["p_resample"])

    def on_train_start(self) -> None:
        # DeepAugment draws from its own generator, one stream per rank (a resumed run restores it: resume_streams)
        if self.deepaugment is not None:
            self.deepaugment.generator.manual_seed(derive_seed(run_seed(), "deepaugment", self.global_rank))

    def resume_streams(self) -> dict[str, Any]:
        return {} if self.deepaugment is None else {"deepaugment": DeepAugmentStream(self.deepaugment)}

    def adversarial_stage(self, x: Tensor, y: Tensor) -> Tensor:
        """Step 3: identity here; AdA overrides it."""
        return x

    def pipeline_loss(self, logits: Tensor, y: Tensor) -> Tensor:
        """Cross-entropy on the first view, plus ``jsd_lambda`` x JSD when AugMix's views are stacked."""
        views = len(logits) // len(y)
        jsd = self.hparams.augmix["jsd_lambda"] * jsd_consistency(logits, views) if views > 1 else 0.0
        return F.cross_entropy(logits[: len(y)], y) + jsd

    def training_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> Tensor:
        x, y = batch[0], batch[1]
        if self.deepaugment is not None and (n := int(round(len(x) * self.hparams.deepaugment["p"]))):
            with torch.no_grad():  # step 1 on the fly: the last round(p * B) images through a distorted EDSR
                x = torch.cat([x[: len(x) - n], self.deepaugment(x[len(x) - n :])])
        start = self.num_clean(len(x))
        if start < len(x):
            x = torch.cat([x[:start], self.adversarial_stage(x[start:], y[start:])])
        views = [x]  # step 4: [augmix(x)], or [x, augmix(x), augmix(x)] with the JSD loss
        if self.augmix is not None:
            views = [x, self.augmix(x), self.augmix(x)] if self.hparams.augmix["jsd"] else [self.augmix(x)]
        augmixed = views[-1] if self.augmix is not None else x[:0]  # an empty row is not drawn
        self.train_rows = [("clean", x[:start]), ("perturbed", x[start:]), ("AugMix", augmixed)]
        loss = self.classifier_step(torch.cat(views), y, self.pipeline_loss)
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=len(y))
        return loss


class DeepAugmentStream:
    """DeepAugment's random stream for exact resume: the generator and its state before the current distortion was
    drawn, from which each rank rebuilds its own distorted network (the checkpoint's weights are rank zero's)."""

    def __init__(self, deepaugment: Any) -> None:
        self.da = deepaugment

    def state_dict(self) -> dict[str, Any]:
        da = self.da
        before = da.resample_state if da.resample_state is not None else da.generator.get_state()
        return {"generator": da.generator.get_state(), "resample_state": before, "sampled": da.sampled}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["sampled"]:
            self.da.generator.set_state(state["resample_state"])
            self.da.resample()
        self.da.generator.set_state(state["generator"])
        self.da.sampled = state["sampled"]
