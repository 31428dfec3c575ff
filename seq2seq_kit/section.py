"""The strict pydantic base of every configuration table (``[data]``, ``[model]``, ...)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

#: The most a count of passes, updates, validations or rows may be: far above any run, and
#: a 32-bit signed integer, which every framework, file format and C library here holds
#: (a larger value is a typo, and would surface as an overflow deep inside one of them).
MAX_COUNT = 2**31 - 1
#: The most output tokens a decoding may ask for (``decode.max_length``, a model's saved
#: ``max_length``): far above any sentence, and a bound on what one decoding allocates.
MAX_LENGTH = 1 << 20
#: The widest seed every framework's generator takes (NumPy, torch, TF, JAX).
MAX_SEED = 2**32 - 1


class Section(BaseModel):
    """A table of options: unknown keys, wrong types and non-finite numbers are refused."""

    # validate_assignment: a bad value set from Python fails here, naming the key, not later
    # allow_inf_nan=False: a nan or inf learning rate, penalty or fraction is never valid;
    # strict: `epochs = true` or `bidirectional = 1` in a file is a mistake, not a value
    # (flags, which are text, are parsed by model_validate_strings)
    model_config = ConfigDict(
        extra="forbid", validate_assignment=True, allow_inf_nan=False, strict=True
    )
