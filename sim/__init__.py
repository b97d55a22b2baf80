"""Hardware simulator: the city's field equipment with local autonomy, served over real protocols."""
