"""Reference geography for the demo: the 11 ASEAN member states, their main cities and the
ASEAN regional reserve depots.

Sources (as understood in late 2026; check before relying on any value operationally):

* Membership: ASEAN's ten members plus Timor-Leste, admitted as the 11th member in October 2025.
  APEC membership is added where the country is an APEC economy.
* ``income_group``: World Bank country classification by income, FY2025 (published July 2024).
* ``population``: World Bank World Development Indicators, SP.POP.TOTL, year 2023, as published
  after the UN World Population Prospects 2024 revision (Singapore uses the national figure).
  The World Bank revises back years, so later releases may differ slightly.
* ``data_protection_regime``: the main general personal-data law in force in each country.
* Time zones: IANA tz database names. Some are links (for example ``Asia/Phnom_Penh`` to
  ``Asia/Bangkok``) but all are valid ``zoneinfo`` keys; the capital's zone comes first.
* Coordinates: WGS84 decimal degrees for city centres, to about 0.01 degree.
* Reserve depots: the AHA Centre's Disaster Emergency Logistics System for ASEAN (DELSA): the
  regional stockpile at the UN Humanitarian Response Depot in Subang, Malaysia, and the satellite
  warehouses in Chai Nat, Thailand (opened June 2019, co-managed with Thailand's Department of
  Disaster Prevention and Mitigation) and at Camp General Emilio Aguinaldo, Quezon City, Philippines
  (co-managed with the Office of Civil Defense). Depot coordinates are approximate (town or site
  level). No separate public location is known for the ASEAN Regional Reserve of Medical Supplies
  (RRMS), so none is listed.
"""

from __future__ import annotations

from dataclasses import dataclass

INCOME_GROUPS: frozenset[str] = frozenset({"high", "upper_middle", "lower_middle", "low"})

NO_DATA_PROTECTION_LAW = "No comprehensive data-protection law"


@dataclass(frozen=True)
class Member:
    """An ASEAN member state."""

    iso3: str
    name: str
    blocs: tuple[str, ...]
    income_group: str
    population: int
    data_protection_regime: str
    time_zones: tuple[str, ...]
    capital: str
    capital_lat: float
    capital_lon: float


@dataclass(frozen=True)
class City:
    """A city or provincial capital used to place demo facilities."""

    name: str
    lat: float
    lon: float
    time_zone: str
    weight: int


@dataclass(frozen=True)
class Depot:
    """A regional reserve warehouse."""

    code: str
    name: str
    iso3: str
    lat: float
    lon: float
    time_zone: str
    operator: str


MEMBERS: tuple[Member, ...] = (
    Member(
        iso3="BRN",
        name="Brunei Darussalam",
        blocs=("ASEAN", "APEC"),
        income_group="high",
        population=458_949,
        data_protection_regime="Personal Data Protection Order 2025 (PDPO)",
        time_zones=("Asia/Brunei",),
        capital="Bandar Seri Begawan",
        capital_lat=4.8903,
        capital_lon=114.9401,
    ),
    Member(
        iso3="KHM",
        name="Cambodia",
        blocs=("ASEAN",),
        income_group="lower_middle",
        population=17_423_880,
        # A draft Law on Personal Data Protection was still under consultation in 2025.
        data_protection_regime=NO_DATA_PROTECTION_LAW,
        time_zones=("Asia/Phnom_Penh",),
        capital="Phnom Penh",
        capital_lat=11.5564,
        capital_lon=104.9282,
    ),
    Member(
        iso3="IDN",
        name="Indonesia",
        blocs=("ASEAN", "APEC"),
        income_group="upper_middle",
        population=281_190_067,
        data_protection_regime="Law No. 27 of 2022 on Personal Data Protection (UU PDP)",
        # WIB (Jakarta, Pontianak), WITA (Makassar), WIT (Jayapura).
        time_zones=("Asia/Jakarta", "Asia/Pontianak", "Asia/Makassar", "Asia/Jayapura"),
        capital="Jakarta",
        capital_lat=-6.2088,
        capital_lon=106.8456,
    ),
    Member(
        iso3="LAO",
        name="Lao PDR",
        blocs=("ASEAN",),
        income_group="lower_middle",
        population=7_664_993,
        data_protection_regime="Law on Electronic Data Protection 2017 (No. 25/NA)",
        time_zones=("Asia/Vientiane",),
        capital="Vientiane",
        capital_lat=17.9757,
        capital_lon=102.6331,
    ),
    Member(
        iso3="MYS",
        name="Malaysia",
        blocs=("ASEAN", "APEC"),
        income_group="upper_middle",
        population=35_126_298,
        data_protection_regime="Personal Data Protection Act 2010 (PDPA), as amended 2024",
        # Asia/Kuching covers Sabah and Sarawak (same offset, UTC+8).
        time_zones=("Asia/Kuala_Lumpur", "Asia/Kuching"),
        capital="Kuala Lumpur",
        capital_lat=3.1390,
        capital_lon=101.6869,
    ),
    Member(
        iso3="MMR",
        name="Myanmar",
        blocs=("ASEAN",),
        income_group="lower_middle",
        population=54_133_798,
        data_protection_regime=NO_DATA_PROTECTION_LAW,
        time_zones=("Asia/Yangon",),
        capital="Nay Pyi Taw",
        capital_lat=19.7633,
        capital_lon=96.0785,
    ),
    Member(
        iso3="PHL",
        name="Philippines",
        blocs=("ASEAN", "APEC"),
        income_group="lower_middle",
        population=114_891_199,
        data_protection_regime="Data Privacy Act of 2012 (Republic Act No. 10173)",
        time_zones=("Asia/Manila",),
        capital="Manila",
        capital_lat=14.5995,
        capital_lon=120.9842,
    ),
    Member(
        iso3="SGP",
        name="Singapore",
        blocs=("ASEAN", "APEC"),
        income_group="high",
        population=5_917_648,
        data_protection_regime="Personal Data Protection Act 2012 (PDPA)",
        time_zones=("Asia/Singapore",),
        capital="Singapore",
        capital_lat=1.2903,
        capital_lon=103.8519,
    ),
    Member(
        iso3="THA",
        name="Thailand",
        blocs=("ASEAN", "APEC"),
        income_group="upper_middle",
        population=71_702_435,
        data_protection_regime="Personal Data Protection Act B.E. 2562 (2019) (PDPA)",
        time_zones=("Asia/Bangkok",),
        capital="Bangkok",
        capital_lat=13.7563,
        capital_lon=100.5018,
    ),
    Member(
        iso3="VNM",
        name="Viet Nam",
        blocs=("ASEAN", "APEC"),
        income_group="lower_middle",
        population=100_352_192,
        # In force 1 January 2026, replacing Decree 13/2023/ND-CP; detailed by Decree 356/2025/ND-CP.
        data_protection_regime="Law on Personal Data Protection 2025 (Law No. 91/2025/QH15)",
        time_zones=("Asia/Ho_Chi_Minh",),
        capital="Hanoi",
        capital_lat=21.0278,
        capital_lon=105.8342,
    ),
    Member(
        iso3="TLS",
        name="Timor-Leste",
        blocs=("ASEAN",),
        income_group="lower_middle",
        population=1_384_286,
        data_protection_regime=NO_DATA_PROTECTION_LAW,
        time_zones=("Asia/Dili",),
        capital="Dili",
        capital_lat=-8.5569,
        capital_lon=125.5603,
    ),
)


CITIES: dict[str, tuple[City, ...]] = {
    "BRN": (
        # One town per district: Brunei-Muara, Belait, Tutong, Temburong.
        City("Bandar Seri Begawan", 4.8903, 114.9401, "Asia/Brunei", 10),
        City("Kuala Belait", 4.5833, 114.1833, "Asia/Brunei", 4),
        City("Tutong", 4.8028, 114.6492, "Asia/Brunei", 3),
        City("Bangar", 4.7086, 115.0726, "Asia/Brunei", 1),
    ),
    "KHM": (
        City("Phnom Penh", 11.5564, 104.9282, "Asia/Phnom_Penh", 10),
        City("Siem Reap", 13.3633, 103.8564, "Asia/Phnom_Penh", 4),
        City("Battambang", 13.0957, 103.2022, "Asia/Phnom_Penh", 4),
        City("Kampong Cham", 11.9934, 105.4635, "Asia/Phnom_Penh", 3),
        City("Sihanoukville", 10.6253, 103.5234, "Asia/Phnom_Penh", 3),
    ),
    "IDN": (
        City("Jakarta", -6.2088, 106.8456, "Asia/Jakarta", 10),
        City("Surabaya", -7.2575, 112.7521, "Asia/Jakarta", 8),
        City("Bandung", -6.9175, 107.6191, "Asia/Jakarta", 7),
        City("Semarang", -6.9667, 110.4167, "Asia/Jakarta", 5),
        City("Medan", 3.5952, 98.6722, "Asia/Jakarta", 7),
        City("Palembang", -2.9761, 104.7754, "Asia/Jakarta", 5),
        City("Pontianak", -0.0263, 109.3425, "Asia/Pontianak", 3),
        City("Makassar", -5.1477, 119.4327, "Asia/Makassar", 5),
        City("Denpasar", -8.6705, 115.2126, "Asia/Makassar", 4),
        City("Manado", 1.4748, 124.8421, "Asia/Makassar", 3),
        City("Ambon", -3.6954, 128.1814, "Asia/Jayapura", 2),
        City("Jayapura", -2.5337, 140.7181, "Asia/Jayapura", 2),
    ),
    "LAO": (
        City("Vientiane", 17.9757, 102.6331, "Asia/Vientiane", 10),
        City("Luang Prabang", 19.8856, 102.1347, "Asia/Vientiane", 4),
        City("Thakhek", 17.4104, 104.8307, "Asia/Vientiane", 3),
        City("Kaysone Phomvihane (Savannakhet)", 16.5500, 104.7500, "Asia/Vientiane", 5),
        City("Pakse", 15.1202, 105.7990, "Asia/Vientiane", 4),
    ),
    "MYS": (
        City("Kuala Lumpur", 3.1390, 101.6869, "Asia/Kuala_Lumpur", 10),
        City("George Town", 5.4141, 100.3288, "Asia/Kuala_Lumpur", 5),
        City("Ipoh", 4.5975, 101.0901, "Asia/Kuala_Lumpur", 4),
        City("Johor Bahru", 1.4927, 103.7414, "Asia/Kuala_Lumpur", 6),
        City("Kuantan", 3.8077, 103.3260, "Asia/Kuala_Lumpur", 3),
        City("Kota Bharu", 6.1254, 102.2381, "Asia/Kuala_Lumpur", 3),
        City("Kuching", 1.5535, 110.3593, "Asia/Kuching", 4),
        City("Kota Kinabalu", 5.9804, 116.0735, "Asia/Kuching", 4),
    ),
    "MMR": (
        City("Yangon", 16.8409, 96.1735, "Asia/Yangon", 10),
        City("Mandalay", 21.9588, 96.0891, "Asia/Yangon", 7),
        City("Nay Pyi Taw", 19.7633, 96.0785, "Asia/Yangon", 4),
        City("Mawlamyine", 16.4905, 97.6283, "Asia/Yangon", 3),
        City("Pathein", 16.7792, 94.7321, "Asia/Yangon", 3),
        City("Taunggyi", 20.7892, 97.0378, "Asia/Yangon", 3),
        City("Sittwe", 20.1462, 92.8983, "Asia/Yangon", 2),
    ),
    "PHL": (
        City("Manila", 14.5995, 120.9842, "Asia/Manila", 10),
        City("Quezon City", 14.6760, 121.0437, "Asia/Manila", 9),
        City("Baguio", 16.4023, 120.5960, "Asia/Manila", 3),
        City("Cebu City", 10.3157, 123.8854, "Asia/Manila", 7),
        City("Iloilo City", 10.7202, 122.5621, "Asia/Manila", 4),
        City("Tacloban", 11.2444, 125.0039, "Asia/Manila", 3),
        City("Puerto Princesa", 9.7392, 118.7353, "Asia/Manila", 2),
        City("Cagayan de Oro", 8.4542, 124.6319, "Asia/Manila", 4),
        City("Davao City", 7.1907, 125.4553, "Asia/Manila", 7),
        City("Zamboanga City", 6.9214, 122.0790, "Asia/Manila", 4),
    ),
    "SGP": (
        # Urban Redevelopment Authority planning areas.
        City("Downtown Core", 1.2868, 103.8545, "Asia/Singapore", 4),
        City("Jurong West", 1.3404, 103.7090, "Asia/Singapore", 7),
        City("Woodlands", 1.4382, 103.7890, "Asia/Singapore", 6),
        City("Tampines", 1.3496, 103.9568, "Asia/Singapore", 7),
    ),
    "THA": (
        City("Bangkok", 13.7563, 100.5018, "Asia/Bangkok", 10),
        City("Chiang Mai", 18.7883, 98.9853, "Asia/Bangkok", 5),
        City("Phitsanulok", 16.8211, 100.2659, "Asia/Bangkok", 3),
        City("Khon Kaen", 16.4419, 102.8360, "Asia/Bangkok", 4),
        City("Nakhon Ratchasima", 14.9799, 102.0978, "Asia/Bangkok", 5),
        City("Ubon Ratchathani", 15.2287, 104.8564, "Asia/Bangkok", 4),
        City("Surat Thani", 9.1382, 99.3215, "Asia/Bangkok", 3),
        City("Hat Yai", 7.0084, 100.4747, "Asia/Bangkok", 4),
    ),
    "VNM": (
        City("Hanoi", 21.0278, 105.8342, "Asia/Ho_Chi_Minh", 9),
        City("Hai Phong", 20.8449, 106.6881, "Asia/Ho_Chi_Minh", 5),
        City("Vinh", 18.6796, 105.6813, "Asia/Ho_Chi_Minh", 3),
        City("Da Nang", 16.0544, 108.2022, "Asia/Ho_Chi_Minh", 5),
        City("Nha Trang", 12.2388, 109.1967, "Asia/Ho_Chi_Minh", 3),
        City("Buon Ma Thuot", 12.6667, 108.0500, "Asia/Ho_Chi_Minh", 3),
        City("Ho Chi Minh City", 10.8231, 106.6297, "Asia/Ho_Chi_Minh", 10),
        City("Can Tho", 10.0452, 105.7469, "Asia/Ho_Chi_Minh", 4),
    ),
    "TLS": (
        City("Dili", -8.5569, 125.5603, "Asia/Dili", 10),
        City("Baucau", -8.4667, 126.4500, "Asia/Dili", 3),
        City("Suai", -9.3129, 125.2565, "Asia/Dili", 2),
        City("Pante Macassar (Oecusse)", -9.2000, 124.3833, "Asia/Dili", 2),
    ),
}


RESERVE_DEPOTS: tuple[Depot, ...] = (
    Depot(
        code="RRD-MYS-SUBANG",
        name="DELSA Regional Stockpile, UN Humanitarian Response Depot Subang",
        iso3="MYS",
        lat=3.1306,
        lon=101.5493,
        time_zone="Asia/Kuala_Lumpur",
        operator="AHA Centre (DELSA)",
    ),
    Depot(
        code="RRD-THA-CHAINAT",
        name="DELSA Satellite Warehouse Chai Nat",
        iso3="THA",
        lat=15.1852,
        lon=100.1251,
        time_zone="Asia/Bangkok",
        operator="AHA Centre (DELSA) with DDPM Thailand",
    ),
    Depot(
        code="RRD-PHL-AGUINALDO",
        name="DELSA Satellite Warehouse Camp Aguinaldo, Quezon City",
        iso3="PHL",
        lat=14.6090,
        lon=121.0600,
        time_zone="Asia/Manila",
        operator="AHA Centre (DELSA) with OCD Philippines",
    ),
)
