"""Adam with global gradient-norm clipping, as :class:`seq2seq_kit.spec.OptimizerSpec` says.

Parameters, gradients and both moments live in flat 1-D buffers, so one update is a dozen
vectorised operations whatever the number of weights; :attr:`Adam.state` exposes the moments
per canonical weight name as views into those buffers. :meth:`Adam.get_state` and
:meth:`Adam.set_state` save and restore everything an update depends on, for exact resumes.
"""

from __future__ import annotations

import math

import numpy as np

from seq2seq_kit.spec import OptimizerSpec


class Adam:
    """Adam (Kingma & Ba 2015, Algorithm 1, with bias correction) over one flat buffer.

    The update for step ``t`` (1-based), with ``g`` the clipped gradient::

        g     <- g * min(1, clip_norm / ||g||_2)       (all weights together; skipped if 0)
        m     <- beta1 * m + (1 - beta1) * g
        v     <- beta2 * v + (1 - beta2) * g^2
        theta <- theta - lr * m_hat / (sqrt(v_hat) + epsilon),
                 m_hat = m / (1 - beta1^t),  v_hat = v / (1 - beta2^t)

    evaluated as PyTorch's ``torch.optim.Adam`` does: ``denom = sqrt(v) / sqrt(1 - beta2^t)
    + epsilon``, ``theta -= (lr / (1 - beta1^t)) * m / denom``.

    The weights of ``spec.frozen`` have their gradient taken as zero (so it counts nowhere,
    the clipping norm included), and their values and moments are put back after the
    vectorised update: they end bit-identical, whatever their moments held.

    Attributes:
        spec: the :class:`OptimizerSpec`.
        learning_rate: the step size ``lr`` (``spec.learning_rate`` until
            :meth:`set_learning_rate`).
        t: number of updates done so far.
        m, v: flat first and second moment buffers, the model's dtype.
        state: ``name -> (m, v)`` views of ``m`` and ``v`` in each weight's shape.
    """

    def __init__(self, spec: OptimizerSpec, shapes: dict[str, tuple[int, ...]], dtype=np.float32):
        """``shapes`` gives the weights in the order they are laid out in the flat buffers."""
        self.spec = spec
        self.learning_rate = float(spec.learning_rate)
        self.shapes = dict(shapes)
        size = sum(math.prod(shape) for shape in shapes.values())
        self.m = np.zeros(size, dtype=dtype)
        self.v = np.zeros(size, dtype=dtype)
        self.t = 0
        self._tmp = np.empty(size, dtype=dtype)
        self._clipped = np.empty(size, dtype=dtype)
        self.state: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._frozen: list[slice] = []
        offset = 0
        for name, shape in shapes.items():
            n = math.prod(shape)
            self.state[name] = (
                self.m[offset : offset + n].reshape(shape),
                self.v[offset : offset + n].reshape(shape),
            )
            if name in spec.frozen:
                self._frozen.append(slice(offset, offset + n))
            offset += n

    def clip_scale(self, grads: np.ndarray) -> float:
        """The factor ``min(1, clip_norm / ||grads||_2)`` (1 when clipping is off)."""
        if self.spec.clip_norm <= 0:
            return 1.0
        norm = math.sqrt(float(np.dot(grads, grads)))
        return min(1.0, self.spec.clip_norm / norm) if norm > 0 else 1.0

    def update(self, params: np.ndarray, grads: np.ndarray) -> None:
        """One Adam step in place on the flat ``params`` with flat ``grads`` (same size and
        dtype as the moments). ``grads`` is not modified."""
        spec = self.spec
        if self._frozen:
            np.copyto(self._clipped, grads)  # ``grads`` itself stays as given
            grads = self._clipped
            kept = []
            for part in self._frozen:
                grads[part] = 0.0
                kept.append((part, params[part].copy(), self.m[part].copy(), self.v[part].copy()))
        scale = self.clip_scale(grads)
        if scale < 1.0:
            grads = np.multiply(grads, scale, out=self._clipped)
        self.t += 1
        tmp, m, v = self._tmp, self.m, self.v
        m *= spec.beta1
        np.multiply(grads, 1.0 - spec.beta1, out=tmp)
        m += tmp
        v *= spec.beta2
        np.multiply(grads, grads, out=tmp)
        tmp *= 1.0 - spec.beta2
        v += tmp
        bias1 = 1.0 - spec.beta1**self.t
        bias2 = 1.0 - spec.beta2**self.t
        np.sqrt(v, out=tmp)
        tmp /= math.sqrt(bias2)
        tmp += spec.epsilon
        np.divide(m, tmp, out=tmp)
        tmp *= self.learning_rate / bias1
        params -= tmp
        if self._frozen:
            for part, value, m_part, v_part in kept:
                params[part], m[part], v[part] = value, m_part, v_part

    def set_learning_rate(self, learning_rate: float) -> None:
        """Use step size ``learning_rate`` (finite, >= 0) from the next update on."""
        learning_rate = float(learning_rate)
        if not math.isfinite(learning_rate) or learning_rate < 0.0:
            raise ValueError(f"learning_rate must be finite and >= 0, got {learning_rate}")
        self.learning_rate = learning_rate

    def get_state(self) -> dict[str, np.ndarray]:
        """``step`` (int64 0-d), ``learning_rate`` (float64 0-d), and float32 copies of the
        moments as ``m/NAME`` and ``v/NAME`` for every weight NAME."""
        state: dict[str, np.ndarray] = {
            "step": np.array(self.t, dtype=np.int64),
            "learning_rate": np.array(self.learning_rate, dtype=np.float64),
        }
        for name, (m, v) in self.state.items():
            state[f"m/{name}"] = m.astype(np.float32, copy=True)
            state[f"v/{name}"] = v.astype(np.float32, copy=True)
        return state

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        """Restore what :meth:`get_state` returned, already checked by
        :func:`seq2seq_kit.weights.check_optimizer_state`."""
        arrays = {key: np.asarray(value) for key, value in state.items()}
        for name, (m, v) in self.state.items():
            m[...] = arrays[f"m/{name}"]
            v[...] = arrays[f"v/{name}"]
        self.t = int(arrays["step"])
        self.learning_rate = float(arrays["learning_rate"])
