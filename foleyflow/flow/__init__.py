"""Flow matching: the training objective (`objective`), ODE samplers over a velocity callable (`samplers`),
guidance (`guidance`), and for RL fine-tuning the Flow-GRPO SDE step with log-probs and the Fast-GRPO sampler
(`sde`) and the GRPO objective (`grpo`). Imports only torch; time runs from noise (t = 0) to data (t = 1)."""
from foleyflow.flow.grpo import group_advantages, grpo_loss
from foleyflow.flow.guidance import apg, batched_cfg, cfg, cfg_apg, multi_condition
from foleyflow.flow.objective import flow_matching_loss, interpolate, sample_times, target_velocity
from foleyflow.flow.samplers import dopri5, euler, heun, midpoint, uniform_grid
from foleyflow.flow.sde import (GrpoRollout, draw_window_start, fast_grpo_sample, gaussian_log_prob, sde_step,
                                step_log_prob)

__all__ = ["apg", "batched_cfg", "cfg", "cfg_apg", "multi_condition", "flow_matching_loss", "interpolate",
           "sample_times", "target_velocity", "dopri5", "euler", "heun", "midpoint", "uniform_grid",
           "group_advantages", "grpo_loss", "GrpoRollout", "draw_window_start", "fast_grpo_sample",
           "gaussian_log_prob", "sde_step", "step_log_prob"]
