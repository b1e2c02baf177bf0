# Version of the fixtures module (the package version), for find_package(ShmTransportFixtures <version>): any 0.x
# request up to this version is compatible (same major version, not newer than this one).
set(PACKAGE_VERSION "0.7.0")  # the package's one version (ShmTransportVersion.current)
if(PACKAGE_FIND_VERSION_MAJOR STREQUAL "" OR
   (PACKAGE_FIND_VERSION_MAJOR EQUAL 0 AND PACKAGE_FIND_VERSION VERSION_LESS_EQUAL PACKAGE_VERSION))
    set(PACKAGE_VERSION_COMPATIBLE TRUE)
    if(PACKAGE_FIND_VERSION VERSION_EQUAL PACKAGE_VERSION)
        set(PACKAGE_VERSION_EXACT TRUE)
    endif()
else()
    set(PACKAGE_VERSION_COMPATIBLE FALSE)
endif()
