echo listening on 3000
