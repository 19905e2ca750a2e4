"""Regenerate the bundled demo data: metafast_csvtasks/data/stations/*.csv (deterministic).

Synthetic but shaped like real station records: each station has its own mean temperature,
seasonal amplitude and phase; humidity anti-correlates with temperature; rows are every ~7.6
days with measurement noise, values rounded as a logger would write them.
"""

from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parents[1] / "metafast_csvtasks" / "data" / "stations"


def main() -> None:
    rng = np.random.default_rng(20260101)
    OUT.mkdir(parents=True, exist_ok=True)
    for i in range(12):
        mean, amplitude = rng.uniform(-2, 18), rng.uniform(4, 14)
        peak_day = rng.uniform(190, 215)
        day = np.sort(rng.choice(np.arange(1, 366), size=48, replace=False))
        season = np.cos(2 * np.pi * (day - peak_day) / 365.25)
        humidity = np.clip(70 - 12 * season + rng.normal(0, 6, day.size), 15, 100)
        temp = mean + amplitude * season - 0.05 * (humidity - 70) + rng.normal(0, 1.2, day.size)
        lines = ["day_of_year,humidity_pct,temperature_c"]
        lines += [f"{d},{h:.0f},{t:.1f}" for d, h, t in zip(day, humidity, temp)]
        (OUT / f"station_{i + 1:02d}.csv").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
