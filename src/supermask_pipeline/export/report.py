"""What a compact file costs, against the dense fp32 network and the entropy bound of its mask."""

from __future__ import annotations

from typing import Any

from supermask_pipeline.export import coding, container
from supermask_pipeline.export.compact import CompactNetwork

__all__ = ["size_report"]


def size_report(network: CompactNetwork) -> dict[str, Any]:
    """Sizes of a decoded compact file.

    Returns:
        ``compact_bytes`` (the file), ``header_bytes`` (prefix, JSON header, trailer),
        ``positions_bytes``, ``signs_bytes``, ``values_bytes``, ``dense_fp32_bytes``
        (4 bytes a masked weight), ``ratio`` (dense / compact), ``remaining_weight_count``,
        ``total_weights``, ``entropy_bound_bytes`` and ``per_layer`` (one row per layer).

        The entropy bound is, per layer, log2 C(n, k) bits for the kept positions (the
        information in a mask drawn uniformly among masks with that count), one bit per
        stored sign and the value bytes as stored; the header is left out. Masks found by
        training are not uniform (dead units, neighbouring pixels kept together), so the
        ``lzma`` position code can go below it.
    """
    rows, bound_bits = [], 0.0
    for entry in network.header["layers"]:
        n = 1
        for d in entry["shape"]:
            n *= d
        k = int(entry["kept"])
        values = entry["values"]
        stored_signs = int(entry["signs"]) > 0
        layer_bits = coding.log2_binomial(n, k) + (k if stored_signs else 0) + 8 * int(values.get("bytes", 0))
        bound_bits += layer_bits
        rows.append({
            "layer": entry["name"], "weights": n, "kept": k, "coded": entry["coded"],
            "positions_codec": entry["positions"]["codec"], "positions_bytes": int(entry["positions"]["bytes"]),
            "signs_bytes": int(entry["signs"]), "values_mode": values["mode"], "values_bytes": int(values.get("bytes", 0)),
            "entropy_bound_bytes": layer_bits / 8,
        })
    total = sum(r["weights"] for r in rows)
    payload = sum(r["positions_bytes"] + r["signs_bytes"] + r["values_bytes"] for r in rows)
    return {
        "compact_bytes": network.size_bytes,
        "header_bytes": network.size_bytes - payload,
        "json_header_bytes": network.size_bytes - payload - container.PREFIX_BYTES - container.TRAILER_BYTES,
        "positions_bytes": sum(r["positions_bytes"] for r in rows),
        "signs_bytes": sum(r["signs_bytes"] for r in rows),
        "values_bytes": sum(r["values_bytes"] for r in rows),
        "dense_fp32_bytes": 4 * total,
        "ratio": 4 * total / network.size_bytes,
        "remaining_weight_count": sum(r["kept"] for r in rows),
        "total_weights": total,
        "entropy_bound_bytes": bound_bits / 8,
        "per_layer": rows,
    }
