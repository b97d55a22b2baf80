"""City configuration: ``tags.yaml`` + inventory + ``alarms.yaml`` → a validated :class:`CityConfig`."""

from scada.config.loader import check_city, load_city
from scada.config.model import CityConfig, DeviceDef, EquipmentDef, TagDef

__all__ = ["CityConfig", "DeviceDef", "EquipmentDef", "TagDef", "check_city", "load_city"]
