# cmake/install.cmake — what `cmake --install` lays out: the public headers, libparity, the
# `parity` CLI, plugins (installed by parity_add_backend_plugin), the CMake package
# (parity::parity, with a version file) and a pkg-config file.
include(CMakePackageConfigHelpers)

set(PARITY_CMAKE_DIR "${CMAKE_INSTALL_LIBDIR}/cmake/parity")
get_target_property(PARITY_LIBRARY_TYPE parity TYPE)
if(PARITY_SIMT_NOTE STREQUAL "built")
  set(PARITY_SIMT_BUILT_IN TRUE)
else()
  set(PARITY_SIMT_BUILT_IN FALSE)
endif()
if(PARITY_ONEDNN_NOTE MATCHES "^built")
  set(PARITY_ONEDNN_BUILT_IN TRUE)
else()
  set(PARITY_ONEDNN_BUILT_IN FALSE)
endif()

install(DIRECTORY api/include/parity DESTINATION ${CMAKE_INSTALL_INCLUDEDIR} COMPONENT devel
        FILES_MATCHING PATTERN "*.h")
install(TARGETS parity EXPORT parity-targets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT devel
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT runtime)
set_target_properties(parity_cli PROPERTIES EXPORT_NAME cli)
install(TARGETS parity_cli EXPORT parity-targets RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT runtime)
install(EXPORT parity-targets NAMESPACE parity:: DESTINATION ${PARITY_CMAKE_DIR} COMPONENT devel)

configure_package_config_file(cmake/parity-config.cmake.in ${PROJECT_BINARY_DIR}/parity-config.cmake
                              INSTALL_DESTINATION ${PARITY_CMAKE_DIR})
write_basic_package_version_file(${PROJECT_BINARY_DIR}/parity-config-version.cmake
                                 VERSION ${PROJECT_VERSION} COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/parity-config.cmake ${PROJECT_BINARY_DIR}/parity-config-version.cmake
        DESTINATION ${PARITY_CMAKE_DIR} COMPONENT devel)

# pkg-config: relocatable (paths relative to the .pc file); a static libparity lists what it needs.
file(RELATIVE_PATH PARITY_PC_RELATIVE_PREFIX "${CMAKE_INSTALL_FULL_LIBDIR}/pkgconfig" "${CMAKE_INSTALL_PREFIX}")
string(REGEX REPLACE "/$" "" PARITY_PC_RELATIVE_PREFIX "${PARITY_PC_RELATIVE_PREFIX}")
if(PARITY_LIBRARY_TYPE STREQUAL "STATIC_LIBRARY")
  set(PARITY_PC_REQUIRES_PRIVATE "tbb zlib fmt")
  set(PARITY_PC_LIBS_PRIVATE "-l${CMAKE_DL_LIBS} -lpthread")
  if(PARITY_SIMT_NOTE STREQUAL "built")
    string(APPEND PARITY_PC_LIBS_PRIVATE " -lboost_context")  # the simt backend's fibers (no .pc in Debian)
  endif()
  if(PARITY_ONEDNN_BUILT_IN)
    string(APPEND PARITY_PC_LIBS_PRIVATE " -ldnnl -lgomp")  # the onednn backend (no .pc in Debian)
  endif()
  if(PARITY_WITH_ONNX)
    string(APPEND PARITY_PC_LIBS_PRIVATE " -lonnx -lonnx_proto")  # onnx/ (no .pc in Debian)
    string(APPEND PARITY_PC_REQUIRES_PRIVATE " protobuf")
  endif()
  if(PARITY_WITH_MPI)
    string(APPEND PARITY_PC_LIBS_PRIVATE " -lmpi")  # dist/ (Open MPI and MPICH both name it libmpi)
  endif()
else()
  set(PARITY_PC_REQUIRES_PRIVATE "")
  set(PARITY_PC_LIBS_PRIVATE "")
endif()
configure_file(cmake/parity.pc.in ${PROJECT_BINARY_DIR}/parity.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/parity.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig COMPONENT devel)
