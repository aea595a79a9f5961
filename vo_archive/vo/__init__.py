"""The shared VO plumbing of every protocol package.

DALI parameters and errors (``dali``), UWS jobs (``uws``), VOTable writing,
VOSI, DataLink and SODA descriptors, MOC, ObsCore, the registry record and its
OAI-PMH interface, XML-schema validation, and the positional queries (HEALPix
cone covers, prepared statements) that SCS, SIA and SSA share.
"""
