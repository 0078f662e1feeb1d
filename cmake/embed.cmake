# Turns files into C arrays at configure time (and again whenever they change),
# so dcmsd carries its migrations and API description with it.

function(dcms_c_bytes path outvar)
  file(READ ${path} hex HEX)
  string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
  set(${outvar} "${bytes}0x00" PARENT_SCOPE)
  set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${path})
endfunction()

function(dcms_embed_file out symbol path)
  dcms_c_bytes(${path} bytes)
  file(SIZE ${path} size)
  file(CONFIGURE OUTPUT ${out} CONTENT "/* Generated from ${path}; do not edit. */
#include <stddef.h>
const char ${symbol}[] = {${bytes}};
const size_t ${symbol}_len = ${size};
" @ONLY)
endfunction()

# Migrations are named NNNN_name.sql; the number is the schema version.
function(dcms_migration_rows files prefix outvar)
  set(rows "")
  set(defs "")
  list(SORT files)
  set(i 0)
  foreach(f IN LISTS files)
    get_filename_component(base ${f} NAME_WE)
    string(REGEX MATCH "^([0-9]+)_(.+)$" m ${base})
    if(NOT m)
      message(FATAL_ERROR "migration ${f} is not named NNNN_name.sql")
    endif()
    math(EXPR ver "${CMAKE_MATCH_1}")
    dcms_c_bytes(${f} bytes)
    string(APPEND defs "static const char ${prefix}_${i}[] = {${bytes}};\n")
    string(APPEND rows "    {${ver}, \"${CMAKE_MATCH_2}\", ${prefix}_${i}},\n")
    math(EXPR i "${i} + 1")
  endforeach()
  set(${outvar}_defs "${defs}" PARENT_SCOPE)
  set(${outvar}_rows "${rows}" PARENT_SCOPE)
  set(${outvar}_n ${i} PARENT_SCOPE)
endfunction()

function(dcms_embed_migrations out sqlite_files pg_files)
  dcms_migration_rows("${sqlite_files}" mig_sqlite s)
  dcms_migration_rows("${pg_files}" mig_pg p)
  file(CONFIGURE OUTPUT ${out} CONTENT "/* Generated from src/store/migrations; do not edit. */
#include \"store/store_int.h\"
${s_defs}${p_defs}
const struct dcms_migration dcms_migrations_sqlite[] = {
${s_rows}    {0, NULL, NULL}};
const struct dcms_migration dcms_migrations_pg[] = {
${p_rows}    {0, NULL, NULL}};
" @ONLY)
endfunction()
