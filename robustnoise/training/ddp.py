"""DDP for modules that train several networks with separate optimisers (ANT: classifier and noise generator).

Lightning's DDP wraps the whole LightningModule in one ``DistributedDataParallel``; in a min-max step each backward
then uses only part of the parameters, which DDP rejects unless ``find_unused_parameters=True`` (which also
all-reduces zero gradients of the idle network on every step). ``ddp_per_network`` instead wraps each network the
module names in ``ddp_networks()`` in its own ``DistributedDataParallel`` (as timm's ``prepare_distributed``) and puts
the wrappers in the module's ``ddp_wrappers`` dict, so every backward synchronises exactly the network it trained.
"""

from __future__ import annotations

from pytorch_lightning.strategies import DDPStrategy, StrategyRegistry
from torch.nn.parallel import DistributedDataParallel


class PerNetworkDDPStrategy(DDPStrategy):
    """DDP with one ``DistributedDataParallel`` per trainable network of the LightningModule."""

    strategy_name = "ddp_per_network"

    def configure_ddp(self) -> None:
        module = self.lightning_module
        if not hasattr(module, "ddp_networks"):
            super().configure_ddp()  # an ordinary module: ordinary DDP
            return
        ids = self.determine_ddp_device_ids()
        kwargs = {k: v for k, v in self._ddp_kwargs.items() if k != "find_unused_parameters"}
        nets = module.ddp_networks().items()
        module.ddp_wrappers = {name: DistributedDataParallel(net, device_ids=ids, **kwargs) for name, net in nets}

    def teardown(self) -> None:
        if hasattr(self.lightning_module, "ddp_wrappers"):
            self.lightning_module.ddp_wrappers = {}
        super().teardown()


for _name, _start in (("ddp_per_network", "popen"), ("ddp_per_network_spawn", "spawn")):
    if _name not in StrategyRegistry:  # ddp_per_network_spawn: for local multiruns
        StrategyRegistry.register(_name, PerNetworkDDPStrategy, description="DDP per network", start_method=_start)
