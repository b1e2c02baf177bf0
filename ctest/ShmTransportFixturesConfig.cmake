# Package configuration for find_package(ShmTransportFixtures CONFIG): loads the module that
# sits next to this file. Set ShmTransportFixtures_DIR to this directory (or add it to
# CMAKE_PREFIX_PATH) so that find_package() finds it.
include("${CMAKE_CURRENT_LIST_DIR}/ShmTransportFixtures.cmake")
set(ShmTransportFixtures_FOUND TRUE)
