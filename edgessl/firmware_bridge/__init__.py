"""Firmware bridge: IMU wire protocol, reference C firmware, simulated device, serial transport."""
