# Warnings and sanitizers for our own targets only (LibTorch headers are included as SYSTEM).
function(libsd_target_options target)
  if(CMAKE_CXX_COMPILER_ID MATCHES "GNU|Clang")
    target_compile_options(${target} PRIVATE -Wall -Wextra)
  endif()
  target_compile_options(${target} PRIVATE ${LIBSD_TORCH_CXX_FLAGS})
endfunction()

if(LIBSD_SANITIZE)
  add_compile_options(-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined)
  add_link_options(-fsanitize=address,undefined)
endif()
