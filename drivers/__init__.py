"""Protocol drivers (Modbus TCP/RTU, OPC UA, SNMP, serial ASCII) and the poll scheduler's I/O side.

One module per protocol; pure framing/planning code kept apart from sockets and serial ports.
"""
