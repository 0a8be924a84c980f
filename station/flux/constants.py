"""Physical constants (SI). Sources: CODATA 2018 for R; Stull (1988) App. for dry air; EddyPro."""

R_J_MOL_K = 8.314462618  # universal gas constant
MD_KG_MOL = 28.9645e-3  # molar mass of dry air
MV_KG_MOL = 18.01528e-3  # molar mass of water
CP_DRY_J_KG_K = 1004.67  # specific heat of dry air at constant pressure
CP_VAPOUR_J_KG_K = 1859.0  # specific heat of water vapour at constant pressure
VON_KARMAN = 0.41
G_M_S2 = 9.81
