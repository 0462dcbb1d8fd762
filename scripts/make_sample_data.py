"""Generate the bundled sample "CRM export" in ``sample_data/``.

Why this exists: segsync's CSV connector, its docs, the tests and the benchmarks all need a
realistic CRM export (companies, contacts, purchases, activities) that anyone can rebuild
without CRM credentials and without shipping real personal data. The files are committed,
so the generator must be fully deterministic: a single ``numpy.random.default_rng(seed)``
stream, no ``random`` module, no wall-clock values and no set/dict iteration-order
dependence. Re-running with the same arguments yields byte-identical CSV files, which
``tests/test_sample_data.py`` checks against the committed copies.

Usage::

    python scripts/make_sample_data.py [--out sample_data] [--contacts 5000]
                                       [--seed 20261115] [--as-of 2026-11-15]

All timestamps are ISO 8601 UTC with second resolution (``2025-03-04T10:15:00Z``) and lie
strictly before ``as_of`` at 00:00:00Z. Windows (days before that instant): contacts
``created_at`` 5 x 365, companies ``modified_at`` 3 x 365, purchases 3 x 365, activities
2 x 365. Purchases and activities never precede their contact's ``created_at``. An empty
cell means a missing value.
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
import time
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
Columns = Sequence[tuple[str, list[str]]]

DEFAULT_CONTACTS: Final = 5000
DEFAULT_SEED: Final = 20261115
DEFAULT_AS_OF: Final = date(2026, 11, 15)
DEFAULT_OUT: Final = Path(__file__).resolve().parent.parent / "sample_data"

DAY: Final = 86_400
CONTACT_WINDOW_DAYS: Final = 5 * 365
COMPANY_WINDOW_DAYS: Final = 3 * 365
PURCHASE_WINDOW_DAYS: Final = 3 * 365
ACTIVITY_WINDOW_DAYS: Final = 2 * 365

COMPANIES_PER_CONTACT: Final = 0.24
CONTACT_ID_START: Final = 100_001
COMPANY_ID_START: Final = 900_001
KM_PER_DEG_LAT: Final = 111.32
GEO_NOISE_KM: Final = 8.0

# --------------------------------------------------------------------------- reference data


@dataclass(frozen=True)
class Country:
    code: str
    female: tuple[str, ...]
    male: tuple[str, ...]
    neutral: tuple[str, ...]
    last: tuple[str, ...]
    mail_domains: tuple[str, ...]
    company_suffixes: tuple[str, ...]
    tld: str


@dataclass(frozen=True)
class City:
    name: str
    country: int  # index into COUNTRIES
    region: str
    lat: float
    lon: float
    weight: float
    postal_range: tuple[int, int] | None  # inclusive numeric range (DE, FR)
    outward_codes: tuple[str, ...] = ()  # UK outward codes (GB)


COUNTRIES: Final = (
    Country(
        code="DE",
        female=("Anna", "Emma", "Hannah", "Lena", "Leonie", "Julia", "Laura", "Sarah", "Lisa",
                "Katharina", "Sophie", "Marie", "Johanna", "Clara", "Sabine", "Petra", "Claudia",
                "Andrea", "Monika", "Ursula", "Jana", "Nina", "Franziska", "Greta"),
        male=("Lukas", "Leon", "Jonas", "Felix", "Maximilian", "Paul", "Finn", "Elias", "Tim",
              "Jan", "Niklas", "Alexander", "Thomas", "Michael", "Andreas", "Stefan", "Markus",
              "Christian", "Jürgen", "Klaus", "Wolfgang", "Tobias", "Florian", "Moritz"),
        neutral=("Alex", "Kim", "Robin", "Sascha", "Luca", "Charlie", "Eike", "Toni"),
        last=("Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Meyer", "Wagner", "Becker",
              "Schulz", "Hoffmann", "Schäfer", "Koch", "Bauer", "Richter", "Klein", "Wolf",
              "Schröder", "Neumann", "Schwarz", "Zimmermann", "Braun", "Krüger", "Hofmann",
              "Hartmann", "Lange", "Schmitt", "Werner", "Krause", "Meier", "Lehmann", "Kaya",
              "Nowak", "Kowalski", "Vogel", "Jung", "Peters"),
        mail_domains=("gmail.com", "web.de", "gmx.de", "t-online.de", "outlook.com"),
        company_suffixes=("GmbH", "GmbH", "GmbH", "AG", "KG"),
        tld="de",
    ),
    Country(
        code="GB",
        female=("Olivia", "Amelia", "Isla", "Ava", "Mia", "Emily", "Sophia", "Grace", "Lily",
                "Freya", "Charlotte", "Jessica", "Sarah", "Emma", "Hannah", "Lucy", "Rebecca",
                "Laura", "Claire", "Helen", "Priya", "Aisha", "Chloe", "Ellie"),
        male=("Oliver", "George", "Harry", "Noah", "Jack", "Leo", "Arthur", "Oscar", "Charlie",
              "James", "William", "Thomas", "Daniel", "Matthew", "David", "Andrew", "Richard",
              "Mark", "Paul", "Samuel", "Mohammed", "Ethan", "Joseph", "Ryan"),
        neutral=("Alex", "Sam", "Jordan", "Morgan", "Riley", "Jamie", "Taylor", "Robin"),
        last=("Smith", "Jones", "Williams", "Taylor", "Brown", "Davies", "Evans", "Wilson",
              "Thomas", "Johnson", "Roberts", "Robinson", "Thompson", "Wright", "Walker", "White",
              "Edwards", "Hughes", "Green", "Hall", "Lewis", "Harris", "Clarke", "Patel",
              "Jackson", "Wood", "Turner", "Martin", "Cooper", "Hill", "Ward", "Morris", "Moore",
              "Khan", "O'Brien", "Begum"),
        mail_domains=("gmail.com", "outlook.com", "hotmail.co.uk", "yahoo.co.uk", "icloud.com"),
        company_suffixes=("Ltd", "Ltd", "Ltd", "PLC", "LLP"),
        tld="co.uk",
    ),
    Country(
        code="FR",
        female=("Emma", "Jade", "Louise", "Alice", "Chloé", "Léa", "Manon", "Inès", "Sarah",
                "Julie", "Marie", "Nathalie", "Isabelle", "Sophie", "Céline", "Aurélie", "Élodie",
                "Charlotte", "Lucie", "Anaïs", "Clara", "Margaux", "Pauline", "Amandine"),
        male=("Gabriel", "Louis", "Raphaël", "Jules", "Adam", "Lucas", "Léo", "Hugo", "Arthur",
              "Nathan", "Thomas", "Nicolas", "Julien", "Pierre", "Antoine", "Alexandre",
              "Mathieu", "Sébastien", "François", "Philippe", "Olivier", "Laurent", "Théo",
              "Maxime"),
        neutral=("Camille", "Dominique", "Claude", "Alix", "Sacha", "Charlie", "Eden", "Lou"),
        last=("Martin", "Bernard", "Dubois", "Thomas", "Robert", "Richard", "Petit", "Durand",
              "Leroy", "Moreau", "Simon", "Laurent", "Lefèvre", "Michel", "Garcia", "David",
              "Bertrand", "Roux", "Vincent", "Fournier", "Morel", "Girard", "André", "Lefebvre",
              "Mercier", "Dupont", "Lambert", "Bonnet", "François", "Martinez", "Benali",
              "Nguyen", "Faure", "Rousseau", "Blanc", "Guerin"),
        mail_domains=("gmail.com", "orange.fr", "free.fr", "laposte.net", "hotmail.fr"),
        company_suffixes=("SAS", "SAS", "SARL", "SA"),
        tld="fr",
    ),
)

CITIES: Final = (
    City("Berlin", 0, "Berlin", 52.5200, 13.4050, 0.22, (10115, 14199)),
    City("Munich", 0, "Bavaria", 48.1351, 11.5820, 0.15, (80331, 81929)),
    City("Hamburg", 0, "Hamburg", 53.5511, 9.9937, 0.13, (20095, 22769)),
    City("London", 1, "Greater London", 51.5074, -0.1278, 0.25, None,
         ("E1", "E2", "E3", "E8", "E14", "EC1A", "EC2A", "EC4M", "N1", "N7", "N16", "NW1",
          "NW3", "NW6", "SE1", "SE10", "SE15", "SW1A", "SW3", "SW4", "SW11", "SW19", "W1",
          "W2", "W8", "W11", "WC1", "WC2")),
    City("Manchester", 1, "Greater Manchester", 53.4808, -2.2426, 0.10, None,
         ("M1", "M2", "M3", "M4", "M8", "M11", "M13", "M14", "M15", "M16", "M19", "M20",
          "M21", "M22", "M40")),
    City("Paris", 2, "Île-de-France", 48.8566, 2.3522, 0.15, (75001, 75020)),
)

# Letters allowed in the inward part of a UK postcode (never C, I, K, M, O, V).
UK_INWARD_LETTERS: Final = "ABDEFGHJLNPQRSTUWXYZ"

INDUSTRIES: Final = ("retail", "software", "manufacturing", "healthcare", "finance",
                     "hospitality", "construction", "education", "logistics", "media",
                     "agriculture", "energy")
INDUSTRY_WORDS: Final = (
    ("Retail", "Stores", "Market"), ("Software", "Digital", "Labs"),
    ("Industries", "Engineering", "Works"), ("Health", "Care", "Medical"),
    ("Capital", "Finance", "Partners"), ("Hotels", "Hospitality", "Catering"),
    ("Construction", "Building", "Builders"), ("Academy", "Learning", "Education"),
    ("Logistics", "Freight", "Transport"), ("Media", "Studios", "Publishing"),
    ("Farms", "Agri", "Produce"), ("Energy", "Power", "Solar"),
)
# Typical annual revenue per employee in EUR, same order as INDUSTRIES.
REVENUE_PER_EMPLOYEE: Final = (180_000.0, 220_000.0, 250_000.0, 120_000.0, 400_000.0,
                               70_000.0, 160_000.0, 80_000.0, 200_000.0, 150_000.0,
                               130_000.0, 600_000.0)

GENDERS: Final = ("female", "male", "nonbinary", "")
GENDER_P: Final = (0.47, 0.46, 0.02, 0.05)

INCOME_BANDS: Final = ("<25k", "25k-50k", "50k-100k", "100k-200k", ">200k")
INCOME_CUTS: Final = (-1.14, -0.20, 0.78, 1.63)  # ~15/28/33/17/7 % on the latent score

LIFECYCLE_STAGES: Final = ("subscriber", "lead", "marketingqualifiedlead", "salesqualifiedlead",
                           "opportunity", "customer", "evangelist")
LIFECYCLE_P: Final = (0.22, 0.25, 0.12, 0.07, 0.05, 0.24, 0.05)
CUSTOMER_STAGES: Final = (5, 6)

# NPS answers of respondents: ~28 % detractors (0-6), ~32 % passives, ~40 % promoters.
NPS_P: Final = (0.03, 0.01, 0.02, 0.03, 0.03, 0.06, 0.10, 0.14, 0.18, 0.20, 0.20)
NPS_EVANGELIST_P: Final = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.02, 0.04, 0.14, 0.35, 0.45)

INTERESTS: Final = ("golf", "travel", "wine", "cooking", "fitness", "running", "cycling",
                    "gardening", "photography", "music", "books", "fashion", "tech", "outdoors",
                    "pets")
INTEREST_POPULARITY: Final = (0.4, 1.6, 0.9, 1.3, 1.4, 0.9, 0.7, 0.6, 0.6, 1.5, 1.1, 0.8, 1.2,
                              1.0, 1.0)
INTEREST_COUNT_P: Final = (0.30, 0.30, 0.20, 0.12, 0.08)  # 1..5 interests when not empty

B2B_TITLES: Final = ("Marketing Manager", "Sales Manager", "Account Executive",
                     "Software Engineer", "Operations Manager", "Project Manager",
                     "Product Manager", "Procurement Manager", "HR Manager", "Finance Manager",
                     "Office Manager", "Consultant", "Data Analyst", "Head of Marketing",
                     "Head of Sales", "Customer Success Manager", "Buyer", "Managing Director",
                     "CEO", "CFO", "CTO")
B2B_TITLE_WEIGHTS: Final = (9.0, 9.0, 8.0, 8.0, 7.0, 7.0, 5.0, 5.0, 4.0, 4.0, 5.0, 6.0, 5.0,
                            3.0, 3.0, 4.0, 4.0, 2.0, 1.5, 1.0, 1.0)
SMALL_COMPANY_TITLES: Final = ("Owner", "Managing Director")
CONSUMER_TITLES: Final = ("Teacher", "Nurse", "Student", "Engineer", "Designer", "Electrician",
                          "Accountant", "Pharmacist", "Chef", "Physiotherapist", "Civil Servant",
                          "Self-employed", "Sales Assistant", "Driver")
RETIREMENT_AGE: Final = 67

ACTIVITY_TYPES: Final = ("email_open", "email_click", "call", "meeting", "form_submission")
# Slightly over-weights clicks because a contact's first email event is turned into an open
# (a click needs an open); the result is close to 50/20/12/6/12 %.
ACTIVITY_TYPE_P: Final = (0.485, 0.215, 0.12, 0.06, 0.12)
OPEN, CLICK = 0, 1

# Per lifecycle stage: chance of having bought, extra purchases (mean, on top of the first)
# and activity-rate multiplier.
BUYER_P: Final = (0.20, 0.25, 0.28, 0.33, 0.42, 0.93, 0.97)
EXTRA_PURCHASES_MEAN: Final = (0.8, 0.8, 1.0, 1.2, 1.5, 3.5, 6.0)
ACTIVITY_RATE: Final = (0.6, 0.8, 1.2, 1.4, 1.7, 1.0, 1.6)

_TRANSLITERATE: Final = {ord("ä"): "ae", ord("ö"): "oe", ord("ü"): "ue", ord("ß"): "ss",
                         ord("Ä"): "Ae", ord("Ö"): "Oe", ord("Ü"): "Ue"}

# --------------------------------------------------------------------------- helpers


def _slug(text: str) -> str:
    """Lower-case ASCII letters and digits only (Müller -> mueller, Lefèvre -> lefevre)."""
    ascii_text = (unicodedata.normalize("NFKD", text.translate(_TRANSLITERATE))
                  .encode("ascii", "ignore").decode("ascii"))
    return "".join(ch for ch in ascii_text.lower() if ch.isalnum())


def _probs(weights: Sequence[float]) -> FloatArray:
    arr = np.asarray(weights, dtype=np.float64)
    total = float(arr.sum())
    return arr / total


def _choice(rng: np.random.Generator, weights: Sequence[float], size: int) -> IntArray:
    return rng.choice(len(weights), size=size, p=_probs(weights)).astype(np.int64)


def _time_of_day(rng: np.random.Generator, size: int) -> IntArray:
    """Seconds since midnight UTC: mostly European business hours, some at any time."""
    business = rng.normal(12.5 * 3600, 2.75 * 3600, size)
    anytime = rng.uniform(0, DAY, size)
    seconds = np.where(rng.random(size) < 0.8, business, anytime)
    return np.clip(seconds, 0, DAY - 1).astype(np.int64)


def _timestamps(rng: np.random.Generator, lo: IntArray, hi: IntArray,
                frac: FloatArray) -> IntArray:
    """Epoch seconds in [lo, hi): position ``frac`` of the span, realistic time of day."""
    base = lo + (frac * (hi - lo)).astype(np.int64)
    stamped = base - base % DAY + _time_of_day(rng, len(base))
    # Near the span's edges the re-timed value may fall outside; keep the plain one there.
    return np.where((stamped >= lo) & (stamped < hi), stamped, base)


def _iso(ts: IntArray) -> list[str]:
    strings: list[str] = np.datetime_as_string(ts.astype("datetime64[s]"), unit="s").tolist()
    return [f"{s}Z" for s in strings]


def _fmt_opt_int(values: IntArray, missing: BoolArray) -> list[str]:
    return ["" if m else str(v) for v, m in zip(values.tolist(), missing.tolist(), strict=True)]


def _fmt_coord(values: FloatArray, missing: BoolArray) -> list[str]:
    return ["" if m else f"{v:.6f}"
            for v, m in zip(values.tolist(), missing.tolist(), strict=True)]


def _pick(options: Sequence[str], index: IntArray) -> list[str]:
    return [options[i] for i in index.tolist()]


def _geo(rng: np.random.Generator, city: IntArray) -> tuple[FloatArray, FloatArray]:
    """Coordinates with ~8 km Gaussian noise (per axis) around each city's centre."""
    centre_lat = np.array([c.lat for c in CITIES])[city]
    centre_lon = np.array([c.lon for c in CITIES])[city]
    lat_sd = GEO_NOISE_KM / KM_PER_DEG_LAT
    lon_sd = np.array([GEO_NOISE_KM / (KM_PER_DEG_LAT * math.cos(math.radians(c.lat)))
                       for c in CITIES])[city]
    lat = centre_lat + rng.normal(0.0, 1.0, len(city)) * lat_sd
    lon = centre_lon + rng.normal(0.0, 1.0, len(city)) * lon_sd
    return lat, lon


def _postal_codes(rng: np.random.Generator, city: IntArray) -> list[str]:
    n = len(city)
    number = rng.random(n)
    outward = rng.random(n)
    inward_digit = rng.integers(0, 10, n)
    letters = rng.integers(0, len(UK_INWARD_LETTERS), (n, 2))
    codes: list[str] = []
    for i, c in enumerate(city.tolist()):
        spec = CITIES[c]
        if spec.postal_range is not None:
            low, high = spec.postal_range
            codes.append(f"{low + int(number[i] * (high - low + 1)):05d}")
        else:
            out = spec.outward_codes[int(outward[i] * len(spec.outward_codes))]
            inward = (f"{inward_digit[i]}{UK_INWARD_LETTERS[letters[i, 0]]}"
                      f"{UK_INWARD_LETTERS[letters[i, 1]]}")
            codes.append(f"{out} {inward}")
    return codes


def _unique(candidates: list[list[str]]) -> list[str]:
    """First candidate not used yet per row; falls back to numbering the first one."""
    seen: set[str] = set()
    result: list[str] = []
    for options in candidates:
        chosen = next((o for o in options if o not in seen), "")
        number = 2
        while not chosen:
            head, sep, tail = options[0].partition("@")
            candidate = f"{head}{number}{sep}{tail}" if sep else f"{head} {number}"
            chosen = candidate if candidate not in seen else ""
            number += 1
        seen.add(chosen)
        result.append(chosen)
    return result


# --------------------------------------------------------------------------- tables


@dataclass(frozen=True)
class Companies:
    city: IntArray
    employees: IntArray
    domain: list[str]
    columns: Columns


@dataclass(frozen=True)
class Contacts:
    stage: IntArray
    created: IntArray
    modified: IntArray
    opt_out: BoolArray


def _companies(rng: np.random.Generator, count: int, as_of_ts: int) -> Companies:
    city = _choice(rng, [c.weight for c in CITIES], count)
    industry = _choice(rng, [1.0 / (k + 1) for k in range(len(INDUSTRIES))], count)
    employees = np.clip(np.rint(rng.lognormal(np.log(25.0), 1.5, count)), 1, 5000)
    employees = employees.astype(np.int64)
    rev_per_emp = np.array(REVENUE_PER_EMPLOYEE)[industry] * rng.lognormal(0.0, 0.4, count)
    revenue = np.maximum(np.rint(employees * rev_per_emp / 1000.0), 10).astype(np.int64) * 1000
    lat, lon = _geo(rng, city)
    lo = np.full(count, as_of_ts - COMPANY_WINDOW_DAYS * DAY, dtype=np.int64)
    hi = np.full(count, as_of_ts, dtype=np.int64)
    modified = _timestamps(rng, lo, hi, 1.0 - rng.random(count) ** 1.5)

    first = rng.random(count)
    second = rng.random(count)
    word = rng.random(count)
    suffix = rng.random(count)
    candidates: list[list[str]] = []
    stems: list[list[str]] = []
    for i in range(count):
        country = COUNTRIES[CITIES[city[i]].country]
        last1 = country.last[int(first[i] * len(country.last))]
        others = [n for n in country.last if n != last1]
        last2 = others[int(second[i] * len(others))]
        words = INDUSTRY_WORDS[industry[i]]
        noun = words[int(word[i] * len(words))]
        legal = country.company_suffixes[int(suffix[i] * len(country.company_suffixes))]
        candidates.append([f"{last1} {noun} {legal}", f"{last1} & {last2} {noun} {legal}",
                           f"{last1} {noun} {CITIES[city[i]].name} {legal}"])
        stems.append([last1, noun])
    names = _unique(candidates)
    domains: list[str] = []
    for name, (last1, noun), city_i in zip(names, stems, city.tolist(), strict=True):
        core = name.rsplit(" ", 1)[0].replace("&", " ")
        parts = [_slug(p) for p in core.split()] or [_slug(last1), _slug(noun)]
        tld = COUNTRIES[CITIES[city_i].country].tld
        domains.append("-".join(p for p in parts if p) + "." + tld)

    columns: Columns = (
        ("id", [str(COMPANY_ID_START + i) for i in range(count)]),
        ("name", names),
        ("industry", _pick(INDUSTRIES, industry)),
        ("employees", [str(v) for v in employees.tolist()]),
        ("annual_revenue", [str(v) for v in revenue.tolist()]),
        ("country", [COUNTRIES[CITIES[c].country].code for c in city.tolist()]),
        ("city", [CITIES[c].name for c in city.tolist()]),
        ("latitude", [f"{v:.6f}" for v in lat.tolist()]),
        ("longitude", [f"{v:.6f}" for v in lon.tolist()]),
        ("modified_at", _iso(modified)),
    )
    return Companies(city=city, employees=employees, domain=domains, columns=columns)


def _contacts(rng: np.random.Generator, count: int, companies: Companies,
              as_of_ts: int) -> tuple[Contacts, list[tuple[str, list[str]]]]:
    n_comp = len(companies.city)
    b2b = rng.random(count) >= 0.20
    weights = np.sqrt(companies.employees.astype(np.float64))
    company = rng.choice(n_comp, size=count, p=weights / weights.sum()).astype(np.int64)
    own_city = _choice(rng, [c.weight for c in CITIES], count)
    city = np.where(b2b & (rng.random(count) < 0.85), companies.city[company], own_city)
    country = np.array([c.country for c in CITIES], dtype=np.int64)[city]
    lat, lon = _geo(rng, city)
    no_geo = rng.random(count) < 0.03
    postal = _postal_codes(rng, city)

    gender = _choice(rng, GENDER_P, count)
    age = np.clip(np.rint(rng.normal(41.0, 13.0, count)), 18, 85).astype(np.int64)
    no_age = rng.random(count) < 0.08
    latent = (0.6 * (b2b - 0.8) + 0.03 * (np.where(no_age, 42, age) - 42)
              + rng.normal(0.0, 1.0, count))
    income = np.searchsorted(np.array(INCOME_CUTS), latent).astype(np.int64)
    no_income = rng.random(count) < 0.10
    stage = _choice(rng, LIFECYCLE_P, count)

    is_customer = np.isin(stage, CUSTOMER_STAGES)
    nps = np.where(stage == 6, _choice(rng, NPS_EVANGELIST_P, count),
                   _choice(rng, NPS_P, count))
    no_nps = rng.random(count) < np.where(is_customer, 0.25, 0.46)
    opt_out = rng.random(count) < 0.08

    interest_count = 1 + _choice(rng, INTEREST_COUNT_P, count)
    interest_count[rng.random(count) < 0.20] = 0
    # Weighted sampling without replacement (Efraimidis-Spirakis keys), vectorised.
    keys = rng.random((count, len(INTERESTS))) ** (1.0 / np.array(INTEREST_POPULARITY))
    rank = np.argsort(np.argsort(-keys, axis=1, kind="stable"), axis=1, kind="stable")
    chosen = rank < interest_count[:, None]
    interests = [";".join(name for name, hit in zip(INTERESTS, row, strict=True) if hit)
                 for row in chosen.tolist()]

    title_draw = _choice(rng, B2B_TITLE_WEIGHTS, count)
    small_draw = rng.random(count)
    consumer_draw = rng.integers(0, len(CONSUMER_TITLES), count)
    consumer_none = rng.random(count) < 0.5

    name_pool = rng.random(count)
    first_draw = rng.random(count)
    last_draw = rng.random(count)
    email_style = rng.random(count)
    email_number = rng.integers(1, 100, count)
    mail_draw = rng.random(count)

    created = _timestamps(rng, np.full(count, as_of_ts - CONTACT_WINDOW_DAYS * DAY),
                          np.full(count, as_of_ts, dtype=np.int64),
                          1.0 - rng.random(count) ** 1.4)
    modified = _timestamps(rng, created, np.full(count, as_of_ts, dtype=np.int64),
                           1.0 - rng.random(count) ** 3)

    first_names: list[str] = []
    last_names: list[str] = []
    titles: list[str] = []
    email_candidates: list[list[str]] = []
    for i in range(count):
        spec = COUNTRIES[country[i]]
        g = GENDERS[gender[i]]
        if g == "nonbinary" and name_pool[i] < 0.6:
            pool = spec.neutral
        elif g == "female" or (g != "male" and name_pool[i] < 0.5):
            pool = spec.female
        else:
            pool = spec.male
        first = pool[int(first_draw[i] * len(pool))]
        last = spec.last[int(last_draw[i] * len(spec.last))]
        first_names.append(first)
        last_names.append(last)

        if b2b[i]:
            if companies.employees[company[i]] <= 5 and small_draw[i] < 0.6:
                title = SMALL_COMPANY_TITLES[int(small_draw[i] < 0.3)]
            else:
                title = B2B_TITLES[title_draw[i]]
            domain = companies.domain[company[i]]
        else:
            title = "" if consumer_none[i] else CONSUMER_TITLES[consumer_draw[i]]
            if title and not no_age[i] and age[i] >= RETIREMENT_AGE:
                title = "Retired"
            domain = spec.mail_domains[int(mail_draw[i] * len(spec.mail_domains))]
        titles.append(title)

        f, la = _slug(first), _slug(last)
        if email_style[i] < 0.55:
            local = [f"{f}.{la}", f"{f[0]}.{la}", f"{f}{la}"]
        elif email_style[i] < 0.75:
            local = [f"{f[0]}{la}", f"{f}.{la}", f"{f}{la}"]
        else:
            local = [f"{f}.{la}{email_number[i]}", f"{f}{la}{email_number[i]}", f"{f}.{la}"]
        email_candidates.append([f"{part}@{domain}" for part in local])
    emails = _unique(email_candidates)

    columns: list[tuple[str, list[str]]] = [
        ("id", [str(CONTACT_ID_START + i) for i in range(count)]),
        ("email", emails),
        ("first_name", first_names),
        ("last_name", last_names),
        ("company_id", [str(COMPANY_ID_START + c) if b else ""
                        for c, b in zip(company.tolist(), b2b.tolist(), strict=True)]),
        ("country", [COUNTRIES[c].code for c in country.tolist()]),
        ("region", [CITIES[c].region for c in city.tolist()]),
        ("city", [CITIES[c].name for c in city.tolist()]),
        ("postal_code", postal),
        ("latitude", _fmt_coord(lat, no_geo)),
        ("longitude", _fmt_coord(lon, no_geo)),
        ("age", _fmt_opt_int(age, no_age)),
        ("gender", _pick(GENDERS, gender)),
        ("income_band", ["" if m else INCOME_BANDS[b]
                         for b, m in zip(income.tolist(), no_income.tolist(), strict=True)]),
        ("job_title", titles),
        ("lifecycle_stage", _pick(LIFECYCLE_STAGES, stage)),
        ("nps_score", _fmt_opt_int(nps, no_nps)),
        ("email_opt_out", ["true" if o else "false" for o in opt_out.tolist()]),
        ("interests", interests),
        # created_at / modified_at are appended by generate() once activities are known.
    ]
    contacts = Contacts(stage=stage, created=created, modified=modified, opt_out=opt_out)
    return contacts, columns


def _purchases(rng: np.random.Generator, contacts: Contacts,
               as_of_ts: int) -> tuple[IntArray, IntArray, Columns]:
    """Returns (contact index, purchased_at, columns)."""
    count = len(contacts.stage)
    buyer = np.flatnonzero(rng.random(count) < np.array(BUYER_P)[contacts.stage])
    stage = contacts.stage[buyer]
    mean_extra = np.array(EXTRA_PURCHASES_MEAN)[stage]
    shape = 0.7
    n_purchases = 1 + np.minimum(rng.negative_binomial(shape, shape / (shape + mean_extra)), 80)

    lower = np.maximum(contacts.created[buyer], as_of_ts - PURCHASE_WINDOW_DAYS * DAY)
    now = np.full(len(buyer), as_of_ts, dtype=np.int64)
    lapsed = rng.random(len(buyer)) < np.where(stage == 6, 0.10, 0.38)
    recency_days = np.where(lapsed, rng.uniform(366, PURCHASE_WINDOW_DAYS, len(buyer)),
                            np.minimum(rng.exponential(70.0, len(buyer)), 364.0))
    # The last purchase falls on the drawn recency day; contacts created after that day
    # get their last purchase anywhere between creation and as_of instead.
    day_end = now - (recency_days * DAY).astype(np.int64)
    too_young = day_end <= lower + 1
    last = _timestamps(rng, np.where(too_young, lower, np.maximum(day_end - DAY, lower)),
                       np.where(too_young, now, day_end), rng.random(len(buyer)))
    first = lower + ((last - lower) * rng.random(len(buyer)) ** 2).astype(np.int64)

    owner = np.repeat(np.arange(len(buyer)), n_purchases)
    is_last = np.zeros(len(owner), dtype=np.bool_)
    is_last[np.cumsum(n_purchases) - 1] = True
    spread = _timestamps(rng, first[owner], last[owner] + 1, rng.random(len(owner)))
    purchased = np.where(is_last, last[owner], spread)

    spend = rng.lognormal(0.0, 0.35, len(buyer)) * np.where(stage == 6, 1.15, 1.0)
    amount = np.maximum(rng.lognormal(4.05, 0.85, len(owner)) * spend[owner], 1.0)
    bump = (rng.exponential(3.0, len(owner)) * DAY).astype(np.int64)
    modified = np.where(rng.random(len(owner)) < 0.75, purchased,
                        np.minimum(purchased + bump, as_of_ts - 1))

    contact = buyer[owner]
    order = np.lexsort((contact, purchased))
    contact, purchased, modified, amount = (contact[order], purchased[order], modified[order],
                                            amount[order])
    columns: Columns = (
        ("id", [f"p{i + 1:06d}" for i in range(len(order))]),
        ("contact_id", [str(CONTACT_ID_START + c) for c in contact.tolist()]),
        ("amount", [f"{v:.2f}" for v in amount.tolist()]),
        ("purchased_at", _iso(purchased)),
        ("modified_at", _iso(modified)),
    )
    return contact, purchased, columns


def _activities(rng: np.random.Generator, contacts: Contacts,
                as_of_ts: int) -> tuple[IntArray, IntArray, Columns]:
    """Returns (contact index, occurred_at, columns)."""
    count = len(contacts.stage)
    lower = np.maximum(contacts.created, as_of_ts - ACTIVITY_WINDOW_DAYS * DAY)
    now = np.full(count, as_of_ts, dtype=np.int64)
    exposure = (now - lower) / float(ACTIVITY_WINDOW_DAYS * DAY)
    shape = 0.9
    engagement = (rng.gamma(shape, 20.5 / shape, count) * np.array(ACTIVITY_RATE)[contacts.stage]
                  * np.where(contacts.opt_out, 0.5, 1.0))
    n_activities = rng.poisson(engagement * np.sqrt(exposure)).astype(np.int64)

    # Engaged contacts are active until recently; others went quiet weeks or months ago.
    percentile = np.argsort(np.argsort(engagement, kind="stable"), kind="stable") / max(count, 1)
    dormant = rng.random(count) < 0.6 - 0.45 * percentile
    gap_days = np.where(dormant, rng.uniform(45.0, 400.0, count), rng.exponential(6.0, count))
    end = now - (gap_days * DAY).astype(np.int64)
    end = np.where(end <= lower + DAY, now, end)
    start = lower + ((end - lower) * rng.random(count) ** 2 * 0.8).astype(np.int64)

    owner = np.repeat(np.arange(count), n_activities)
    occurred = _timestamps(rng, start[owner], end[owner], rng.random(len(owner)) ** 0.7)
    kind = _choice(rng, ACTIVITY_TYPE_P, len(owner))

    order = np.lexsort((owner, occurred))
    owner, occurred, kind = owner[order], occurred[order], kind[order]
    # A contact's first email event is always an open, so every clicker has opened too.
    email_rows = np.flatnonzero(kind <= CLICK)
    by_contact = email_rows[np.argsort(owner[email_rows], kind="stable")]
    first_of_contact = np.ones(len(by_contact), dtype=np.bool_)
    first_of_contact[1:] = owner[by_contact][1:] != owner[by_contact][:-1]
    kind[by_contact[first_of_contact]] = OPEN

    stamps = _iso(occurred)
    columns: Columns = (
        ("id", [f"a{i + 1:07d}" for i in range(len(owner))]),
        ("contact_id", [str(CONTACT_ID_START + c) for c in owner.tolist()]),
        ("type", _pick(ACTIVITY_TYPES, kind)),
        ("occurred_at", stamps),
        ("modified_at", stamps),
    )
    return owner, occurred, columns


def _write_csv(path: Path, columns: Columns) -> int:
    header = [name for name, _ in columns]
    values = [col for _, col in columns]
    rows = len(values[0])
    if any(len(col) != rows for col in values):
        raise ValueError(f"{path.name}: columns of unequal length")
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(zip(*values, strict=True))
    return rows


def generate(out_dir: Path, contacts: int = DEFAULT_CONTACTS, seed: int = DEFAULT_SEED,
             as_of: date = DEFAULT_AS_OF) -> dict[str, int]:
    """Write companies/contacts/purchases/activities CSVs to ``out_dir``; return row counts."""
    if contacts < 1:
        raise ValueError("contacts must be >= 1")
    rng = np.random.default_rng(seed)
    as_of_ts = int(datetime(as_of.year, as_of.month, as_of.day, tzinfo=UTC).timestamp())

    company_table = _companies(rng, max(1, round(contacts * COMPANIES_PER_CONTACT)), as_of_ts)
    people, contact_columns = _contacts(rng, contacts, company_table, as_of_ts)
    buyer, purchased, purchase_columns = _purchases(rng, people, as_of_ts)
    actor, occurred, activity_columns = _activities(rng, people, as_of_ts)

    # A contact's record changes whenever it buys or engages.
    modified = people.modified.copy()
    np.maximum.at(modified, buyer, purchased)
    np.maximum.at(modified, actor, occurred)
    contact_columns += [("created_at", _iso(people.created)), ("modified_at", _iso(modified))]

    out_dir.mkdir(parents=True, exist_ok=True)
    tables: tuple[tuple[str, Columns], ...] = (
        ("companies.csv", company_table.columns),
        ("contacts.csv", contact_columns),
        ("purchases.csv", purchase_columns),
        ("activities.csv", activity_columns),
    )
    return {name: _write_csv(out_dir / name, cols) for name, cols in tables}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help="output directory (default: the repository's sample_data/)")
    parser.add_argument("--contacts", type=int, default=DEFAULT_CONTACTS)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--as-of", type=date.fromisoformat, default=DEFAULT_AS_OF,
                        help="export date YYYY-MM-DD; every timestamp is before its 00:00Z")
    args = parser.parse_args(argv)
    if args.contacts < 1:
        parser.error("--contacts must be >= 1")
    started = time.perf_counter()
    counts = generate(args.out, contacts=args.contacts, seed=args.seed, as_of=args.as_of)
    elapsed = time.perf_counter() - started
    for name, rows in counts.items():
        print(f"{args.out / name}: {rows} rows")
    print(f"generated in {elapsed:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
