# cmake/parity_plugin.cmake — parity_add_backend_plugin(): one call makes a backend plugin
# libparity-backend-<name>.so with the right name, hidden symbols, an $ORIGIN RUNPATH, its
# install destination <libdir>/parity, and its build-tree folder recorded for uninstalled runs.
#
#   parity_add_backend_plugin(<name> SOURCES <src>... [LINK_LIBRARIES <lib>...]
#                             [OUTPUT_DIRECTORY <dir>] [NO_INSTALL])
#
# The target is parity_backend_<name>. A plugin includes only api/ headers and ops/kernels/
# and links nothing of parity (checked with -Wl,--no-undefined outside sanitizer builds), so
# it loads into static and shared builds alike. NO_INSTALL (with OUTPUT_DIRECTORY) is for
# plugins that exist only for the tests: they are neither installed nor recorded.

# Where the plugins of an uninstalled build live; listed in parity-build-tree.txt.
set(PARITY_BUILD_TREE_PLUGIN_DIR "${PROJECT_BINARY_DIR}/lib/parity")

function(parity_add_backend_plugin name)
  cmake_parse_arguments(ARG "NO_INSTALL" "OUTPUT_DIRECTORY" "SOURCES;LINK_LIBRARIES" ${ARGN})
  if(NOT name MATCHES "^[a-z0-9_]+$")
    message(FATAL_ERROR "parity_add_backend_plugin: name '${name}' must be lowercase letters, digits and '_'")
  endif()
  if(NOT ARG_SOURCES)
    message(FATAL_ERROR "parity_add_backend_plugin(${name}): SOURCES is required")
  endif()
  set(target parity_backend_${name})
  set(out_dir "${PARITY_BUILD_TREE_PLUGIN_DIR}")
  if(ARG_OUTPUT_DIRECTORY)
    set(out_dir "${ARG_OUTPUT_DIRECTORY}")
  endif()
  add_library(${target} MODULE ${ARG_SOURCES})
  set_target_properties(${target} PROPERTIES
    PREFIX "lib"
    OUTPUT_NAME "parity-backend-${name}"
    SUFFIX ".so"
    LIBRARY_OUTPUT_DIRECTORY "${out_dir}"
    C_VISIBILITY_PRESET hidden
    CXX_VISIBILITY_PRESET hidden
    VISIBILITY_INLINES_HIDDEN ON
    BUILD_RPATH "$ORIGIN"
    INSTALL_RPATH "$ORIGIN")
  target_include_directories(${target} PRIVATE "${PROJECT_SOURCE_DIR}/api/include" "${PROJECT_SOURCE_DIR}")
  target_link_libraries(${target} PRIVATE $<BUILD_INTERFACE:parity_warnings> ${ARG_LINK_LIBRARIES})
  target_link_options(${target} PRIVATE -Wl,--enable-new-dtags)
  if(NOT PARITY_SANITIZE)
    target_link_options(${target} PRIVATE -Wl,--no-undefined)
  endif()
  if(NOT ARG_NO_INSTALL)
    install(TARGETS ${target} LIBRARY DESTINATION "${CMAKE_INSTALL_LIBDIR}/parity" COMPONENT plugins)
    set_property(GLOBAL APPEND PROPERTY PARITY_PLUGINS_BUILT ${name})
  endif()
endfunction()
