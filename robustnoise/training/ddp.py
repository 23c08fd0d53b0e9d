"""DDP for modules that train several networks with separate optimisers (ANT: classifier and noise generator).

Lightning's DDP wraps the whole module: a min-max step's backward, using one network, needs ``find_unused_parameters``
(all-reducing the idle network's zero gradients). Here each network gets its own ``DistributedDataParallel`` (as timm's
``prepare_distributed``) in the module's ``ddp_wrappers``: every backward synchronises exactly the network it trained.
"""

from __future__ import annotations

from pytorch_lightning.strategies import DDPStrategy, StrategyRegistry
from torch.nn.parallel import DistributedDataParallel


class PerNetworkDDPStrategy(DDPStrategy):
    """DDP with one ``DistributedDataParallel`` per network of a ``RobustClassifierModule``'s ``ddp_networks()``."""

    strategy_name = "ddp_per_network"

    def configure_ddp(self) -> None:
        module = self.lightning_module
        ids = self.determine_ddp_device_ids()
        kwargs = {k: v for k, v in self._ddp_kwargs.items() if k != "find_unused_parameters"}
        nets = module.ddp_networks().items()
        module.ddp_wrappers = {name: DistributedDataParallel(net, device_ids=ids, **kwargs) for name, net in nets}

    def teardown(self) -> None:
        if self.lightning_module is not None:
            self.lightning_module.ddp_wrappers = {}
        super().teardown()


for _name, _start in (("ddp_per_network", "popen"), ("ddp_per_network_spawn", "spawn")):
    if _name not in StrategyRegistry:  # ddp_per_network_spawn: for local multiruns
        StrategyRegistry.register(_name, PerNetworkDDPStrategy, description="DDP per network", start_method=_start)
