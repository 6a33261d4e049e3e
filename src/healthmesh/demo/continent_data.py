"""Reference facts for the continent-scale demo: the 55 African Union members and five regional
reserve depots.

Sources and caveats (orders of magnitude for load tests, not operational data):

* Membership: the 55 member states of the African Union, including the Sahrawi Arab Democratic
  Republic (ISO 3166-1 ``ESH``, Western Sahara), grouped in the AU's five regions (North, West,
  Central, East, Southern). Morocco, which rejoined in 2017, is placed in the Northern region.
* ``population`` (World Bank SP.POP.TOTL 2023, rounded) and ``income_group`` (World Bank FY2025
  classification, approximately) are those of ``bench/allocation.py`` for its 50 members; the five
  it leaves out (Djibouti, Comoros, Cabo Verde, Sahrawi Republic, Sao Tome and Principe) are added
  here the same way. The World Bank does not classify the Sahrawi Republic: its population is the
  UN WPP estimate for Western Sahara, and "low" income is an assumption of the demo.
* ``centre_lat``/``centre_lon``/``spread``: where a member's population lives and how far its
  facilities scatter (degrees), as in the benchmark. For the Sahrawi Republic that is the refugee
  camps near Tindouf, where its health services work.
* ``hub``: the city of the national medical store, usually the capital; the economic capital
  where that is where the store is (Abidjan, Cotonou, Bujumbura, Dar es Salaam, Lagos), Port
  Sudan since the war in Sudan, and Rabouni (Tindouf camps) for the Sahrawi Republic.
  Coordinates to about 0.01 degree.
* Time zones: IANA names, the capital's first (the DR Congo has two).
* Regional reserve depots: one per AU region, placed (for the demo) in the cities of Africa CDC's
  Regional Coordinating Centres (Cairo, Abuja, Libreville, Nairobi, Lusaka). There is no such
  network of depots today; names, codes and sites are illustrative.
* Data-protection regimes are not recorded here (left empty rather than guessed).
"""

from __future__ import annotations

from dataclasses import dataclass

AU_BLOC = "AU"
REGIONS: tuple[str, ...] = ("North", "West", "Central", "East", "Southern")


@dataclass(frozen=True)
class AuMember:
    iso3: str
    name: str
    region: str
    income_group: str
    population: int
    capital: str
    hub: str
    hub_lat: float
    hub_lon: float
    centre_lat: float
    centre_lon: float
    spread: float
    time_zones: tuple[str, ...]


@dataclass(frozen=True)
class ReserveDepot:
    code: str
    name: str
    region: str
    iso3: str
    lat: float
    lon: float
    time_zone: str
    operator: str


def _m(
    iso3: str,
    name: str,
    region: str,
    income_group: str,
    population: int,
    capital: str,
    hub: tuple[str, float, float],
    centre: tuple[float, float, float],
    *time_zones: str,
) -> AuMember:
    return AuMember(iso3, name, region, income_group, population, capital, *hub, *centre, time_zones)


# Most populous first (ids follow this order).
AU_MEMBERS: tuple[AuMember, ...] = (
    _m("NGA", "Nigeria", "West", "lower_middle", 223_800_000, "Abuja", ("Lagos", 6.52, 3.38),
       (8.5, 7.5, 3.0), "Africa/Lagos"),
    _m("ETH", "Ethiopia", "East", "low", 126_500_000, "Addis Ababa", ("Addis Ababa", 9.03, 38.74),
       (9.0, 38.7, 3.0), "Africa/Addis_Ababa"),
    _m("EGY", "Egypt", "North", "lower_middle", 112_700_000, "Cairo", ("Cairo", 30.04, 31.24),
       (30.0, 31.2, 1.5), "Africa/Cairo"),
    _m("COD", "Democratic Republic of the Congo", "Central", "low", 102_300_000, "Kinshasa",
       ("Kinshasa", -4.32, 15.31), (-3.5, 22.0, 5.0), "Africa/Kinshasa", "Africa/Lubumbashi"),
    _m("TZA", "Tanzania", "East", "lower_middle", 67_400_000, "Dodoma", ("Dar es Salaam", -6.82, 39.28),
       (-6.4, 35.0, 3.0), "Africa/Dar_es_Salaam"),
    _m("ZAF", "South Africa", "Southern", "upper_middle", 60_400_000, "Pretoria", ("Pretoria", -25.75, 28.19),
       (-27.5, 27.0, 3.0), "Africa/Johannesburg"),
    _m("KEN", "Kenya", "East", "lower_middle", 55_100_000, "Nairobi", ("Nairobi", -1.29, 36.82),
       (-0.5, 37.0, 2.0), "Africa/Nairobi"),
    _m("UGA", "Uganda", "East", "low", 48_600_000, "Kampala", ("Kampala", 0.35, 32.58),
       (1.0, 32.5, 1.5), "Africa/Kampala"),
    _m("SDN", "Sudan", "East", "low", 48_100_000, "Khartoum", ("Port Sudan", 19.62, 37.22),
       (14.5, 31.0, 3.0), "Africa/Khartoum"),
    _m("DZA", "Algeria", "North", "upper_middle", 45_600_000, "Algiers", ("Algiers", 36.75, 3.06),
       (35.5, 3.5, 2.0), "Africa/Algiers"),
    _m("MAR", "Morocco", "North", "lower_middle", 37_800_000, "Rabat", ("Rabat", 34.02, -6.84),
       (33.0, -7.0, 1.5), "Africa/Casablanca"),
    _m("AGO", "Angola", "Southern", "lower_middle", 36_700_000, "Luanda", ("Luanda", -8.84, 13.23),
       (-10.5, 15.5, 3.0), "Africa/Luanda"),
    _m("GHA", "Ghana", "West", "lower_middle", 34_100_000, "Accra", ("Accra", 5.60, -0.19),
       (6.5, -1.3, 1.5), "Africa/Accra"),
    _m("MOZ", "Mozambique", "Southern", "low", 33_900_000, "Maputo", ("Maputo", -25.97, 32.57),
       (-17.0, 36.0, 3.0), "Africa/Maputo"),
    _m("MDG", "Madagascar", "East", "low", 30_300_000, "Antananarivo", ("Antananarivo", -18.88, 47.51),
       (-19.0, 47.0, 2.0), "Indian/Antananarivo"),
    _m("CIV", "Côte d'Ivoire", "West", "lower_middle", 28_900_000, "Yamoussoukro", ("Abidjan", 5.36, -4.01),
       (6.5, -5.0, 1.5), "Africa/Abidjan"),
    _m("CMR", "Cameroon", "Central", "lower_middle", 28_600_000, "Yaoundé", ("Yaoundé", 3.85, 11.50),
       (5.0, 11.5, 2.0), "Africa/Douala"),
    _m("NER", "Niger", "West", "low", 27_200_000, "Niamey", ("Niamey", 13.51, 2.11),
       (13.5, 6.0, 2.5), "Africa/Niamey"),
    _m("MLI", "Mali", "West", "low", 23_300_000, "Bamako", ("Bamako", 12.64, -8.00),
       (13.0, -7.0, 2.5), "Africa/Bamako"),
    _m("BFA", "Burkina Faso", "West", "low", 23_300_000, "Ouagadougou", ("Ouagadougou", 12.37, -1.52),
       (12.3, -1.5, 1.5), "Africa/Ouagadougou"),
    _m("MWI", "Malawi", "Southern", "low", 20_900_000, "Lilongwe", ("Lilongwe", -13.96, 33.79),
       (-14.0, 34.0, 1.2), "Africa/Blantyre"),
    _m("ZMB", "Zambia", "Southern", "low", 20_600_000, "Lusaka", ("Lusaka", -15.39, 28.32),
       (-14.0, 28.0, 2.5), "Africa/Lusaka"),
    _m("TCD", "Chad", "Central", "low", 18_300_000, "N'Djamena", ("N'Djamena", 12.13, 15.06),
       (11.0, 17.0, 3.0), "Africa/Ndjamena"),
    _m("SOM", "Somalia", "East", "low", 18_100_000, "Mogadishu", ("Mogadishu", 2.05, 45.32),
       (3.0, 45.0, 3.0), "Africa/Mogadishu"),
    _m("SEN", "Senegal", "West", "lower_middle", 18_000_000, "Dakar", ("Dakar", 14.72, -17.47),
       (14.5, -15.5, 1.2), "Africa/Dakar"),
    _m("ZWE", "Zimbabwe", "Southern", "lower_middle", 16_700_000, "Harare", ("Harare", -17.83, 31.05),
       (-18.5, 30.5, 1.5), "Africa/Harare"),
    _m("GIN", "Guinea", "West", "low", 14_200_000, "Conakry", ("Conakry", 9.64, -13.58),
       (10.0, -11.5, 1.2), "Africa/Conakry"),
    _m("RWA", "Rwanda", "East", "low", 14_100_000, "Kigali", ("Kigali", -1.95, 30.06),
       (-2.0, 30.0, 0.5), "Africa/Kigali"),
    _m("BEN", "Benin", "West", "lower_middle", 13_700_000, "Porto-Novo", ("Cotonou", 6.37, 2.39),
       (7.5, 2.3, 1.0), "Africa/Porto-Novo"),
    _m("BDI", "Burundi", "Central", "low", 13_200_000, "Gitega", ("Bujumbura", -3.38, 29.36),
       (-3.4, 29.9, 0.5), "Africa/Bujumbura"),
    _m("TUN", "Tunisia", "North", "lower_middle", 12_500_000, "Tunis", ("Tunis", 36.81, 10.18),
       (35.5, 10.0, 1.0), "Africa/Tunis"),
    _m("SSD", "South Sudan", "East", "low", 11_100_000, "Juba", ("Juba", 4.85, 31.58),
       (6.5, 31.0, 2.5), "Africa/Juba"),
    _m("TGO", "Togo", "West", "low", 9_100_000, "Lomé", ("Lomé", 6.13, 1.22),
       (7.5, 1.1, 0.8), "Africa/Lome"),
    _m("SLE", "Sierra Leone", "West", "low", 8_800_000, "Freetown", ("Freetown", 8.48, -13.23),
       (8.5, -12.0, 0.8), "Africa/Freetown"),
    _m("LBY", "Libya", "North", "upper_middle", 6_900_000, "Tripoli", ("Tripoli", 32.89, 13.19),
       (31.5, 15.0, 2.5), "Africa/Tripoli"),
    _m("COG", "Republic of the Congo", "Central", "lower_middle", 6_100_000, "Brazzaville",
       ("Brazzaville", -4.27, 15.28), (-3.0, 15.0, 1.5), "Africa/Brazzaville"),
    _m("CAF", "Central African Republic", "Central", "low", 5_700_000, "Bangui", ("Bangui", 4.39, 18.56),
       (5.5, 20.0, 2.0), "Africa/Bangui"),
    _m("LBR", "Liberia", "West", "low", 5_400_000, "Monrovia", ("Monrovia", 6.30, -10.80),
       (6.5, -9.5, 0.8), "Africa/Monrovia"),
    _m("MRT", "Mauritania", "North", "lower_middle", 4_900_000, "Nouakchott", ("Nouakchott", 18.08, -15.98),
       (18.5, -15.0, 2.0), "Africa/Nouakchott"),
    _m("ERI", "Eritrea", "East", "low", 3_700_000, "Asmara", ("Asmara", 15.32, 38.93),
       (15.3, 38.9, 1.0), "Africa/Asmara"),
    _m("GMB", "The Gambia", "West", "low", 2_800_000, "Banjul", ("Banjul", 13.45, -16.58),
       (13.4, -16.0, 0.3), "Africa/Banjul"),
    _m("BWA", "Botswana", "Southern", "upper_middle", 2_700_000, "Gaborone", ("Gaborone", -24.63, 25.92),
       (-23.0, 25.5, 1.5), "Africa/Gaborone"),
    _m("NAM", "Namibia", "Southern", "upper_middle", 2_600_000, "Windhoek", ("Windhoek", -22.56, 17.08),
       (-21.0, 17.0, 2.0), "Africa/Windhoek"),
    _m("GAB", "Gabon", "Central", "upper_middle", 2_400_000, "Libreville", ("Libreville", 0.39, 9.45),
       (-0.5, 10.5, 1.2), "Africa/Libreville"),
    _m("LSO", "Lesotho", "Southern", "lower_middle", 2_300_000, "Maseru", ("Maseru", -29.31, 27.48),
       (-29.5, 28.0, 0.5), "Africa/Maseru"),
    _m("GNB", "Guinea-Bissau", "West", "low", 2_200_000, "Bissau", ("Bissau", 11.86, -15.60),
       (12.0, -15.3, 0.5), "Africa/Bissau"),
    _m("GNQ", "Equatorial Guinea", "Central", "upper_middle", 1_700_000, "Malabo", ("Malabo", 3.75, 8.78),
       (2.0, 10.0, 0.6), "Africa/Malabo"),
    _m("MUS", "Mauritius", "East", "upper_middle", 1_300_000, "Port Louis", ("Port Louis", -20.16, 57.50),
       (-20.2, 57.5, 0.2), "Indian/Mauritius"),
    _m("SWZ", "Eswatini", "Southern", "lower_middle", 1_200_000, "Mbabane", ("Mbabane", -26.31, 31.14),
       (-26.5, 31.4, 0.3), "Africa/Mbabane"),
    _m("DJI", "Djibouti", "East", "lower_middle", 1_140_000, "Djibouti", ("Djibouti", 11.59, 43.15),
       (11.6, 43.1, 0.3), "Africa/Djibouti"),
    _m("COM", "Comoros", "East", "lower_middle", 850_000, "Moroni", ("Moroni", -11.70, 43.26),
       (-11.9, 43.6, 0.3), "Indian/Comoro"),
    _m("CPV", "Cabo Verde", "West", "lower_middle", 600_000, "Praia", ("Praia", 14.93, -23.51),
       (15.0, -23.6, 0.3), "Atlantic/Cape_Verde"),
    _m("ESH", "Sahrawi Arab Democratic Republic", "North", "low", 590_000, "El Aaiún (claimed)",
       ("Rabouni", 27.48, -8.08), (27.5, -8.1, 0.4), "Africa/El_Aaiun"),
    _m("STP", "São Tomé and Príncipe", "Central", "lower_middle", 230_000, "São Tomé",
       ("São Tomé", 0.34, 6.73), (0.3, 6.65, 0.1), "Africa/Sao_Tome"),
    _m("SYC", "Seychelles", "East", "high", 120_000, "Victoria", ("Victoria", -4.62, 55.45),
       (-4.6, 55.5, 0.1), "Indian/Mahe"),
)  # fmt: skip

#: The DR Congo's two zones meet at about 22 E (Kinshasa time to the west, Lubumbashi time east).
COD_ZONE_BOUNDARY_LON = 22.0

RESERVE_DEPOTS: tuple[ReserveDepot, ...] = tuple(
    ReserveDepot(f"AU-RRD-{region.upper()}", f"AU Regional Reserve Depot, {label} ({city})", region, iso3,
                 lat, lon, zone, "Africa CDC Regional Coordinating Centre (illustrative)")
    for region, label, city, iso3, lat, lon, zone in (
        ("North", "Northern Africa", "Cairo", "EGY", 30.06, 31.33, "Africa/Cairo"),
        ("West", "Western Africa", "Abuja", "NGA", 9.06, 7.49, "Africa/Lagos"),
        ("Central", "Central Africa", "Libreville", "GAB", 0.42, 9.47, "Africa/Libreville"),
        ("East", "Eastern Africa", "Nairobi", "KEN", -1.32, 36.85, "Africa/Nairobi"),
        ("Southern", "Southern Africa", "Lusaka", "ZMB", -15.41, 28.29, "Africa/Lusaka"),
    )
)  # fmt: skip

#: Regulators at WHO Global Benchmarking maturity level 3 or above (approximately, by 2025): they
#: decide for themselves; the others mostly rely on WHO listing or on one of them.
STRONG_REGULATORS: tuple[str, ...] = ("EGY", "GHA", "NGA", "RWA", "SEN", "TZA", "ZAF", "ZWE")
#: Illustrative reliance partners (a neighbour's strong regulator).
RELIANCE: dict[str, str] = {
    "BWA": "ZAF", "LSO": "ZAF", "NAM": "ZAF", "SWZ": "ZAF", "BDI": "TZA", "UGA": "TZA",
    "KEN": "TZA", "MWI": "ZWE", "ZMB": "ZWE", "GMB": "SEN", "GNB": "SEN", "MLI": "SEN",
    "LBR": "GHA", "SLE": "GHA", "TGO": "GHA", "BEN": "NGA", "NER": "NGA", "LBY": "EGY",
    "SDN": "EGY", "COM": "TZA",
}  # fmt: skip
