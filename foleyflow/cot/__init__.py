"""Chain of thought as a structured, editable plan (issue 19): the "foleyflow-cot/1" schema (`schema`), its
four-part and monolithic text (`render`), converters from FoleyWorld's ground truth and ALIVE captions (`convert`),
a time-aligned plan track on the latent timeline (`track`), and retrieval refinement of sound words (`refine`).
See docs/cot.md. Importing this package loads only numpy (MiniLM loads inside `refine` when used)."""
from foleyflow.cot.schema import (JSON_SCHEMA, SCHEMA_ID, Plan, PlanError, Scene, Source, move_event, parse_plan,
                                  plan_to_dict, read_plan, remove_source, set_pan, shift_pan, validate, write_plan)
from foleyflow.cot.render import Wording, four_part, four_part_text, monolithic_text
from foleyflow.cot.convert import plan_from_alive, plan_from_truth, truth_monolithic, truth_wording

__all__ = ["JSON_SCHEMA", "SCHEMA_ID", "Plan", "PlanError", "Scene", "Source", "Wording", "four_part",
           "four_part_text", "monolithic_text", "move_event", "parse_plan", "plan_from_alive", "plan_from_truth",
           "plan_to_dict", "read_plan", "remove_source", "set_pan", "shift_pan", "truth_monolithic", "truth_wording",
           "validate",
           "write_plan"]
