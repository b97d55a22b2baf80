"""Work orders: maintenance's unit of work, from an alarm (one click or ``work_order: auto``) or by hand.

    model     the order and its state machine (pure: ``apply(order, change)``; ``replay`` of the journal)
    crews     crews.yaml: crews, services, vehicles, shifts, accounts, SLAs (validated by ``scada check``)
    store     workorders.sqlite: the orders and their append-only change journal (WAL, synchronous FULL)
    service   the façade the server, the API and the CLI use (create, link, act, alarm events, tick)
    kpi       time to acknowledge / dispatch / repair, backlog, SLA breaches, repeat failures

Core layer: imports only ``scada``.
"""

from scada.workorders.crews import Crew, CrewsConfig, check_crews, load_crews
from scada.workorders.kpi import KpiReport, compute
from scada.workorders.model import Action, Change, Status, WorkOrder, apply, replay
from scada.workorders.service import AlarmRef, WorkOrders
from scada.workorders.store import FILE_NAME, OrderQuery, WorkOrderStore

__all__ = ["FILE_NAME", "Action", "AlarmRef", "Change", "Crew", "CrewsConfig", "KpiReport", "OrderQuery", "Status",
           "WorkOrder", "WorkOrderStore", "WorkOrders", "apply", "check_crews", "compute", "load_crews", "replay"]
