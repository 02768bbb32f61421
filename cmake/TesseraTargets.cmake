# One helper per kind of target, so that every target of a kind is built the same way and nothing
# reaches a target through a directory-wide setting:
#
#   tessera_library(<name> STATIC|SHARED|INTERFACE [SOURCES ...] [PUBLIC ...] [PRIVATE ...])
#       A piece of src/. Its users include its headers as "<piece>/<file>.h" (src/ is on their
#       include path through the library, never through include_directories).
#   tessera_program(<name> SOURCES ... [LIBRARIES ...])
#       An executable: a tool in bin/, or a program a test runs. Test programs include the tests'
#       shared pieces as "tests/<folder>/<file>.h".
#   tessera_test(<name> SOURCES ... [LIBRARIES ...] [LABEL <label>] [PREFIX <prefix>]
#                [TIMEOUT <seconds>] [ONE_TEST])
#       A GoogleTest program. Each of its tests is a CTest test (PREFIX before their names), or,
#       with ONE_TEST, the whole program is one CTest test named <name> (for suites that share one
#       expensive fixture). LABEL: `cluster` (needs `make cluster`) or `tsan` (also run by
#       `make test-tsan`); unlabelled tests run in `make test-fast` and under ASan+UBSan.
#   tessera_fuzzer(<name> SOURCES ... [LIBRARIES ...])
#       A libFuzzer target (TESSERA_FUZZ=ON, clang); seeds in fuzz/corpus/<name>/.
include_guard(GLOBAL)
include(GoogleTest)

function(tessera_library name kind)
  cmake_parse_arguments(PARSE_ARGV 2 arg "" "" "SOURCES;PUBLIC;PRIVATE")
  if(arg_UNPARSED_ARGUMENTS)
    message(FATAL_ERROR "tessera_library(${name}): unknown arguments ${arg_UNPARSED_ARGUMENTS}")
  endif()
  if(kind STREQUAL "INTERFACE")
    if(arg_SOURCES OR arg_PRIVATE)
      message(FATAL_ERROR "tessera_library(${name} INTERFACE) takes neither SOURCES nor PRIVATE")
    endif()
    add_library(${name} INTERFACE)
    target_include_directories(${name} INTERFACE ${PROJECT_SOURCE_DIR}/src)
    target_link_libraries(${name} INTERFACE ${arg_PUBLIC})
    return()
  endif()
  if(NOT kind MATCHES "^(STATIC|SHARED)$")
    message(FATAL_ERROR "tessera_library(${name}): the kind is STATIC, SHARED or INTERFACE, not '${kind}'")
  endif()
  if(NOT arg_SOURCES)
    message(FATAL_ERROR "tessera_library(${name}): no SOURCES")
  endif()
  add_library(${name} ${kind} ${arg_SOURCES})
  target_include_directories(${name} PUBLIC ${PROJECT_SOURCE_DIR}/src)
  target_link_libraries(${name} PUBLIC ${arg_PUBLIC} PRIVATE ${arg_PRIVATE})
endfunction()

function(tessera_program name)
  cmake_parse_arguments(PARSE_ARGV 1 arg "" "" "SOURCES;LIBRARIES")
  if(arg_UNPARSED_ARGUMENTS OR NOT arg_SOURCES)
    message(FATAL_ERROR "tessera_program(${name} SOURCES ... [LIBRARIES ...]): got ${ARGN}")
  endif()
  add_executable(${name} ${arg_SOURCES})
  target_include_directories(${name} PRIVATE ${PROJECT_SOURCE_DIR}/src ${PROJECT_SOURCE_DIR})
  target_link_libraries(${name} PRIVATE ${arg_LIBRARIES})
endfunction()

function(tessera_test name)
  cmake_parse_arguments(PARSE_ARGV 1 arg "ONE_TEST" "LABEL;PREFIX;TIMEOUT" "SOURCES;LIBRARIES")
  if(arg_UNPARSED_ARGUMENTS OR NOT arg_SOURCES)
    message(FATAL_ERROR "tessera_test(${name} SOURCES ... [LIBRARIES ...] ...): got ${ARGN}")
  endif()
  if(arg_LABEL AND NOT arg_LABEL MATCHES "^(cluster|tsan)$")
    message(FATAL_ERROR "tessera_test(${name}): LABEL is cluster or tsan, not '${arg_LABEL}'")
  endif()
  if(NOT arg_TIMEOUT)
    set(arg_TIMEOUT 300)
  endif()
  tessera_program(${name} SOURCES ${arg_SOURCES} LIBRARIES ${arg_LIBRARIES} GTest::gtest_main)
  if(arg_ONE_TEST)
    add_test(NAME ${name} COMMAND ${name})
    set_tests_properties(${name} PROPERTIES TIMEOUT ${arg_TIMEOUT})
    if(arg_LABEL)
      set_tests_properties(${name} PROPERTIES LABELS ${arg_LABEL})
    endif()
    return()
  endif()
  set(properties TIMEOUT ${arg_TIMEOUT})
  if(arg_LABEL)
    list(APPEND properties LABELS ${arg_LABEL})
  endif()
  gtest_discover_tests(${name} TEST_PREFIX "${arg_PREFIX}" DISCOVERY_TIMEOUT 60
                       PROPERTIES ${properties})
endfunction()

function(tessera_fuzzer name)
  cmake_parse_arguments(PARSE_ARGV 1 arg "" "" "SOURCES;LIBRARIES")
  if(arg_UNPARSED_ARGUMENTS OR NOT arg_SOURCES)
    message(FATAL_ERROR "tessera_fuzzer(${name} SOURCES ... [LIBRARIES ...]): got ${ARGN}")
  endif()
  tessera_program(${name} SOURCES ${arg_SOURCES} LIBRARIES ${arg_LIBRARIES})
  target_compile_options(${name} PRIVATE -fsanitize=fuzzer,address,undefined)
  target_link_options(${name} PRIVATE -fsanitize=fuzzer,address,undefined)
endfunction()
