"""The plugin host: the hook specifications, the pluggy manager that loads entry points and
local plugins, the component registry with typed options, and the contracts (protocols,
data classes, capabilities, validators) that components are held to.

May import: foundation.
"""
