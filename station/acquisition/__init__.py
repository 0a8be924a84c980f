"""Acquisition: instrument bytes in, aligned period blocks out.

:mod:`~station.acquisition.readers` keeps one driver thread per streaming instrument,
:mod:`~station.acquisition.met` polls Modbus met sensors into minute means,
:mod:`~station.acquisition.hostclock` stamps samples, :mod:`~station.acquisition.align` places them
on the period's sample grid and :mod:`~station.acquisition.periodblock` holds one period's arrays.
"""
