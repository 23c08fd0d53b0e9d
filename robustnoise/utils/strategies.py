"""DDP for modules that train several networks with separate optimisers (ANT: classifier and noise generator).

Lightning's DDP wraps the whole LightningModule in one ``DistributedDataParallel``; in a min-max step each backward
then uses only part of the parameters, which DDP rejects unless ``find_unused_parameters=True`` (which also
all-reduces zero gradients of the idle network on every step). ``ddp_per_network`` instead wraps each network the
module names in :meth:`ddp_networks` in its own ``DistributedDataParallel`` (as timm's ``prepare_distributed``), so
every backward synchronises exactly the network it trained.
"""

from __future__ import annotations

from typing import Any

from pytorch_lightning.strategies import DDPStrategy, StrategyRegistry
from torch import nn
from torch.nn.parallel import DistributedDataParallel


class PerNetworkDDPStrategy(DDPStrategy):
    """DDP with one ``DistributedDataParallel`` per trainable network of the LightningModule."""

    strategy_name = "ddp_per_network"

    def configure_ddp(self) -> None:
        module = self.lightning_module
        if not hasattr(module, "attach_ddp_wrappers"):
            super().configure_ddp()  # an ordinary module: ordinary DDP
            return
        device_ids = self.determine_ddp_device_ids()
        kwargs = {k: v for k, v in self._ddp_kwargs.items() if k != "find_unused_parameters"}

        def wrap(network: nn.Module) -> nn.Module:
            return DistributedDataParallel(network, device_ids=device_ids, **kwargs)

        module.attach_ddp_wrappers(wrap)

    def teardown(self) -> None:
        module = self.lightning_module
        if module is not None and hasattr(module, "detach_ddp_wrappers"):
            module.detach_ddp_wrappers()
        super().teardown()


def register_strategies(registry: Any = StrategyRegistry) -> None:
    """Make ``ddp_per_network`` (and ``ddp_per_network_spawn``, for local multiruns) available (idempotent)."""
    for name, start_method in (("ddp_per_network", "popen"), ("ddp_per_network_spawn", "spawn")):
        if name not in registry:
            registry.register(
                name,
                PerNetworkDDPStrategy,
                description=f"DDP with one DistributedDataParallel per network, start method {start_method}",
                start_method=start_method,
            )


register_strategies()
