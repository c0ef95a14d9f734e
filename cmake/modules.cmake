# mandate_module(<path> [DEPS <module>...] [LIBS <target>...])
#
# Declares the module at src/<path> (public headers in include/mandate/<path>) as the static
# library mandate_<path with / -> _>, linked to exactly its DEPS (other modules) and LIBS
# (external targets). Files named *_test.cc become the module's gtest binary, registered
# with CTest. main.cc is left out (it belongs to an executable).
#
# Layering is enforced at configure time: every `#include "mandate/<m>/..."` in the module's
# sources, tests and public headers must name the module itself or one of its transitive DEPS.
function(mandate_module path)
  cmake_parse_arguments(M "" "" "DEPS;LIBS" ${ARGN})
  string(REPLACE "/" "_" name "${path}")
  set(dir "${PROJECT_SOURCE_DIR}/src/${path}")
  file(GLOB all_srcs CONFIGURE_DEPENDS "${dir}/*.cc")
  file(GLOB headers CONFIGURE_DEPENDS "${PROJECT_SOURCE_DIR}/include/mandate/${path}/*.h"
       "${dir}/*.h" "${dir}/internal/*.h")
  file(GLOB internal_srcs CONFIGURE_DEPENDS "${dir}/internal/*.cc")
  set(srcs ${all_srcs} ${internal_srcs})
  list(FILTER srcs EXCLUDE REGEX "(_test|/main)\\.cc$")
  set(tests ${all_srcs} ${internal_srcs})
  list(FILTER tests INCLUDE REGEX "_test\\.cc$")

  # Transitive closure of allowed modules.
  set(allowed "${path}")
  foreach(dep IN LISTS M_DEPS)
    get_property(dep_allowed GLOBAL PROPERTY "MANDATE_ALLOWED_${dep}")
    if(NOT DEFINED dep_allowed OR dep_allowed STREQUAL "")
      message(FATAL_ERROR "module ${path} depends on ${dep}, which is not declared before it")
    endif()
    list(APPEND allowed ${dep_allowed})
  endforeach()
  list(REMOVE_DUPLICATES allowed)
  set_property(GLOBAL PROPERTY "MANDATE_ALLOWED_${path}" "${allowed}")

  foreach(f IN LISTS srcs tests headers)
    file(STRINGS "${f}" incs REGEX "^#include \"mandate/")
    foreach(inc IN LISTS incs)
      string(REGEX REPLACE "^#include \"mandate/(.*)/[^/]+\\.h\".*$" "\\1" m "${inc}")
      if(NOT m IN_LIST allowed)
        file(RELATIVE_PATH rel "${PROJECT_SOURCE_DIR}" "${f}")
        message(FATAL_ERROR "layering: ${rel} includes mandate/${m}/, but module '${path}' may "
                            "only use: ${allowed} (see STYLE.md, module map)")
      endif()
    endforeach()
  endforeach()

  set(dep_targets "")
  foreach(dep IN LISTS M_DEPS)
    string(REPLACE "/" "_" dep_name "${dep}")
    list(APPEND dep_targets "mandate_${dep_name}")
  endforeach()

  if(srcs)
    add_library(mandate_${name} STATIC ${srcs})
    target_include_directories(mandate_${name} PUBLIC "${PROJECT_SOURCE_DIR}/include"
                                                PRIVATE "${PROJECT_SOURCE_DIR}/src")
    target_link_libraries(mandate_${name} PUBLIC ${dep_targets} ${M_LIBS})
  else()
    add_library(mandate_${name} INTERFACE)
    target_include_directories(mandate_${name} INTERFACE "${PROJECT_SOURCE_DIR}/include")
    target_link_libraries(mandate_${name} INTERFACE ${dep_targets} ${M_LIBS})
  endif()

  if(tests)
    add_executable(mandate_${name}_test ${tests})
    target_include_directories(mandate_${name}_test PRIVATE "${PROJECT_SOURCE_DIR}/src")
    # Tests that hold the docs to the code (e.g. a documented example config must parse).
    target_compile_definitions(mandate_${name}_test PRIVATE
                               MANDATE_SOURCE_DIR="${PROJECT_SOURCE_DIR}")
    target_link_libraries(mandate_${name}_test PRIVATE mandate_${name} GTest::gtest GTest::gmock
                                                       GTest::gtest_main)
    add_test(NAME unit.${name} COMMAND mandate_${name}_test)
    set_tests_properties(unit.${name} PROPERTIES LABELS unit TIMEOUT 600)
  endif()
endfunction()
