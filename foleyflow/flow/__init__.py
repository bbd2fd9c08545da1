"""Flow matching: the training objective (`objective`), ODE samplers over a velocity callable (`samplers`) and
guidance (`guidance`). Imports only torch; time runs from noise (t = 0) to data (t = 1)."""
from foleyflow.flow.guidance import apg, batched_cfg, cfg, cfg_apg, multi_condition
from foleyflow.flow.objective import flow_matching_loss, interpolate, sample_times, target_velocity
from foleyflow.flow.samplers import dopri5, euler, heun, midpoint, uniform_grid

__all__ = ["apg", "batched_cfg", "cfg", "cfg_apg", "multi_condition", "flow_matching_loss", "interpolate",
           "sample_times", "target_velocity", "dopri5", "euler", "heun", "midpoint", "uniform_grid"]
