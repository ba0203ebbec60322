"""US ZIP code → state and Census region, by the 3-digit prefix (the sectional center facility).

The table is written from public facts: the USPS assigns each 3-digit ZIP prefix to one state
(USPS Publication 65 / the National Five-Digit ZIP Code and Post Office Directory), and the US
Census Bureau groups the states into four regions (Northeast, Midwest, South, West). Prefixes
that are unassigned, military (APO/FPO 090–099, 340, 962–966), or anything that is not five
digits (Canadian postal codes, blanks, typos) map to "unknown". Territories (Puerto Rico, the
Virgin Islands, Guam and the Pacific islands) are region "Territories".
"""

from __future__ import annotations

import re

# (first prefix, last prefix, state), inclusive ranges over 3-digit prefixes
ZIP3_RANGES: tuple[tuple[int, int, str], ...] = (
    (5, 5, "NY"), (6, 7, "PR"), (8, 8, "VI"), (9, 9, "PR"),
    (10, 27, "MA"), (28, 29, "RI"), (30, 38, "NH"), (39, 49, "ME"),
    (50, 54, "VT"), (55, 55, "MA"), (56, 59, "VT"), (60, 69, "CT"), (70, 89, "NJ"),
    (100, 149, "NY"), (150, 196, "PA"), (197, 199, "DE"), (200, 200, "DC"), (201, 201, "VA"),
    (202, 205, "DC"), (206, 219, "MD"), (220, 246, "VA"), (247, 268, "WV"), (270, 289, "NC"),
    (290, 299, "SC"), (300, 319, "GA"), (320, 339, "FL"), (341, 349, "FL"), (350, 369, "AL"),
    (370, 385, "TN"), (386, 397, "MS"), (398, 399, "GA"), (400, 427, "KY"), (430, 459, "OH"),
    (460, 479, "IN"), (480, 499, "MI"), (500, 528, "IA"), (530, 549, "WI"), (550, 567, "MN"),
    (569, 569, "DC"), (570, 577, "SD"), (580, 588, "ND"), (590, 599, "MT"), (600, 629, "IL"),
    (630, 658, "MO"), (660, 679, "KS"), (680, 693, "NE"), (700, 714, "LA"), (716, 729, "AR"),
    (730, 732, "OK"), (733, 733, "TX"), (734, 749, "OK"), (750, 799, "TX"), (800, 816, "CO"),
    (820, 831, "WY"), (832, 838, "ID"), (840, 847, "UT"), (850, 865, "AZ"), (870, 884, "NM"),
    (885, 885, "TX"), (889, 898, "NV"), (900, 961, "CA"), (967, 968, "HI"), (969, 969, "GU"),
    (970, 979, "OR"), (980, 994, "WA"), (995, 999, "AK"),
)

CENSUS_REGIONS: dict[str, tuple[str, ...]] = {
    "Northeast": ("CT", "ME", "MA", "NH", "RI", "VT", "NJ", "NY", "PA"),
    "Midwest": ("IL", "IN", "MI", "OH", "WI", "IA", "KS", "MN", "MO", "NE", "ND", "SD"),
    "South": ("DE", "FL", "GA", "MD", "NC", "SC", "VA", "DC", "WV", "AL", "KY", "MS", "TN", "AR",
              "LA", "OK", "TX"),
    "West": ("AZ", "CO", "ID", "MT", "NV", "NM", "UT", "WY", "AK", "CA", "HI", "OR", "WA"),
    "Territories": ("PR", "VI", "GU"),
}

UNKNOWN = "unknown"
_STATE_OF_PREFIX: dict[int, str] = {p: s for lo, hi, s in ZIP3_RANGES for p in range(lo, hi + 1)}
_REGION_OF_STATE: dict[str, str] = {s: r for r, states in CENSUS_REGIONS.items() for s in states}
_ZIP = re.compile(r"^\s*(\d{5})(?:-\d{4})?\s*$")


def zip_state(zip_code: object) -> str:
    """Two-letter state of a US ZIP code ("85711" → "AZ"); "unknown" when malformed or unassigned."""
    m = _ZIP.match(str(zip_code)) if zip_code is not None else None
    if m is None:
        return UNKNOWN
    return _STATE_OF_PREFIX.get(int(m.group(1)[:3]), UNKNOWN)


def state_region(state: str) -> str:
    """Census region of a two-letter state code; "unknown" for anything else."""
    return _REGION_OF_STATE.get(state, UNKNOWN)


def zip_region(zip_code: object) -> tuple[str, str]:
    """(state, region) of a ZIP code, each "unknown" when it cannot be placed."""
    state = zip_state(zip_code)
    return state, state_region(state)
