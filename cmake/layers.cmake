# cmake/layers.cmake — the layer table of DESIGN.md, written once: which folder may use which.
# The build reads it (parity_add_layer: each layer's library links the layers it may use), and so
# do the two tests that hold the boundaries: cmake/check_layer_includes.cmake (an #include the
# table forbids) and cmake/check_layer_links.cmake (a call into a layer the table forbids). The
# tests run as `cmake -P` scripts, so this file only sets variables and defines functions.

# parity_layer_rule(<folder> [USES <folder>...]): <folder> (a top-level folder, or a sub-layer
# such as ops/kernels) may include headers of itself, of its subfolders and of the USES folders
# (each with its subfolders). ANY: may use everything. The most specific folder of a file is its
# layer: backends/ref/x.cpp follows the backends/ref rule, backends/cpu/x.cpp the backends rule.
macro(parity_layer_rule folder)
  cmake_parse_arguments(_rule "ANY" "" "USES" ${ARGN})
  list(APPEND PARITY_LAYER_FOLDERS ${folder})
  string(MAKE_C_IDENTIFIER "${folder}" _rule_id)
  if(_rule_ANY)
    set(PARITY_LAYER_USES_${_rule_id} "*")
  else()
    set(PARITY_LAYER_USES_${_rule_id} ${_rule_USES})
  endif()
endmacro()

set(PARITY_LAYER_FOLDERS "")
# api/: the installed headers, included as "parity/x.h"; they use nothing internal.
parity_layer_rule(api)
parity_layer_rule(util        USES api ops/kernels)  # counter_rng.h: the Philox of ops/kernels/philox.h
# ops/kernels/: element math compiled into the backends and the GPU plugins, so it stands alone.
parity_layer_rule(ops/kernels USES api)
parity_layer_rule(ops         USES api)
parity_layer_rule(graph       USES api ops)
# A backend sees the plugin ABI and the shared kernel math, never graph internals.
parity_layer_rule(backends    USES api ops/kernels util)
# ref is the float64 oracle: it shares no code with what it checks, so not even ops/kernels.
parity_layer_rule(backends/ref USES api util backends)
parity_layer_rule(data        USES api util)
parity_layer_rule(onnx        USES api ops graph)
parity_layer_rule(model       USES api util ops graph backends data onnx)
parity_layer_rule(dist        USES api model backends)
parity_layer_rule(check       USES api util ops graph backends data onnx model dist)
parity_layer_rule(bench       USES api util ops graph backends data onnx model dist check)
parity_layer_rule(tools       USES api util ops graph backends data onnx model dist check bench)
parity_layer_rule(tests       ANY)
parity_layer_rule(fuzz        ANY)
# examples/ are built against the installed package: the public headers only.
parity_layer_rule(examples    USES api)

# Third-party headers that belong to one layer: <CLI/...> is argument parsing (tools/ only);
# GoogleTest is for tests/. parity_external_rule(<first folder of the include> <folder>...).
macro(parity_external_rule prefix)
  list(APPEND PARITY_EXTERNAL_PREFIXES ${prefix})
  set(PARITY_EXTERNAL_USERS_${prefix} ${ARGN})
endmacro()
set(PARITY_EXTERNAL_PREFIXES "")
parity_external_rule(CLI   tools tests)
parity_external_rule(gtest tests)
parity_external_rule(gmock tests)

# Known violations whose fix is in flight on another branch of issue #11: "<file>|<included path>".
# The test reports them without failing, and fails once one no longer occurs, so that the entry
# is removed with the fix.
set(PARITY_LAYER_KNOWN_EXCEPTIONS
)

# The same for calls between layers (cmake/check_layer_links.cmake): "<source>|<layer it calls into>".
set(PARITY_LAYER_KNOWN_LINK_EXCEPTIONS
)

# The layer (a folder of the table) a repository path belongs to: the longest matching folder,
# or "" when none. "parity/x.h" (how api headers are included) belongs to api.
function(parity_layer_of path out)
  if(path MATCHES "^parity/")
    set(${out} api PARENT_SCOPE)
    return()
  endif()
  set(best "")
  string(LENGTH "" best_len)
  foreach(folder IN LISTS PARITY_LAYER_FOLDERS)
    string(LENGTH "${folder}" len)
    string(FIND "${path}/" "${folder}/" at)
    if(at EQUAL 0 AND len GREATER best_len)
      set(best "${folder}")
      set(best_len ${len})
    endif()
  endforeach()
  set(${out} "${best}" PARENT_SCOPE)
endfunction()

# Whether layer <from> may use layer <to>: the same layer, a subfolder of it, or one of its USES
# (with their subfolders).
function(parity_layer_may_use from to out)
  string(MAKE_C_IDENTIFIER "${from}" id)
  set(allowed ${from} ${PARITY_LAYER_USES_${id}})
  set(ok FALSE)
  foreach(folder IN LISTS allowed)
    string(FIND "${to}/" "${folder}/" at)
    if(folder STREQUAL "*" OR at EQUAL 0)
      set(ok TRUE)
    endif()
  endforeach()
  set(${out} ${ok} PARENT_SCOPE)
endfunction()

# parity_add_layer(<folder> [SOURCES <src>...] [LINK_LIBRARIES <third-party>...]): the OBJECT
# library parity_<folder> of a layer, linking the libraries of the layers the table lets it use
# (those that exist yet) and its own third-party dependencies. Its objects and those
# dependencies are folded into the one installed library, `parity` (CMakeLists.txt). A folder adds
# its sources with target_sources(parity_<folder> PRIVATE ...) from its own CMakeLists.txt.
function(parity_add_layer folder)
  cmake_parse_arguments(ARG "" "" "SOURCES;LINK_LIBRARIES" ${ARGN})
  set(target parity_${folder})
  add_library(${target} OBJECT ${ARG_SOURCES})
  # libparity.so is made of these objects, so they are position-independent when it is shared.
  set_target_properties(${target} PROPERTIES POSITION_INDEPENDENT_CODE ${BUILD_SHARED_LIBS})
  target_link_libraries(${target} PRIVATE parity_layer_common ${ARG_LINK_LIBRARIES})
  string(MAKE_C_IDENTIFIER "${folder}" id)
  foreach(used IN LISTS PARITY_LAYER_USES_${id})
    if(TARGET parity_${used})
      target_link_libraries(${target} PRIVATE parity_${used})
    endif()
  endforeach()
  set_property(GLOBAL APPEND PROPERTY PARITY_LAYER_LIBRARIES ${target})
endfunction()

# The end of both layer checks: fails on a stale known exception, and on the violations found (or,
# with an expected-list file, the self-test, on any difference from it). <known> names the list of
# known exceptions, <seen> those that occurred, <found> the violations ("<file>|..." keys).
function(parity_layer_check_verdict check known seen found expected_file)
  set(failures "")
  if(expected_file)
    set(${known} "")   # the self-test: nothing is exempt
  endif()
  foreach(item IN LISTS ${known})
    if(NOT item IN_LIST ${seen})
      message("known exception no longer occurs: remove \"${item}\" from ${known} in cmake/layers.cmake")
      list(APPEND failures "stale exception ${item}")
    endif()
  endforeach()
  if(expected_file)
    file(STRINGS ${expected_file} expected ENCODING UTF-8 REGEX "^[^#]")
    foreach(item IN LISTS expected)
      if(NOT item IN_LIST ${found})
        list(APPEND failures "not reported: ${item}")
      endif()
    endforeach()
    foreach(item IN LISTS ${found})
      if(NOT item IN_LIST expected)
        list(APPEND failures "reported but not expected: ${item}")
      endif()
    endforeach()
  elseif(${found})
    list(LENGTH ${found} count)
    list(APPEND failures "${count} not allowed by the layer table")
  endif()
  if(failures)
    string(REPLACE ";" "\n  " failures "${failures}")
    message(FATAL_ERROR "${check} failed:\n  ${failures}")
  endif()
endfunction()
